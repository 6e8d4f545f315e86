"""reft: ReFT (Reasoning with Reinforced Fine-Tuning, Luong et al., ACL 2024), end to end.

The package import is kept light on purpose (no torch, no transformers): the CLI, the data layer and
the answer grader import only what they use.
"""

__version__ = "0.1.0"
