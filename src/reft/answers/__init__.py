"""Grading: answer extraction, comparison and sandboxed program execution. Torch-free.

- `extract`: pull the final answer out of an N-CoT completion (strict = the paper's rule, or
  lenient), normalise numbers and option letters, and rebuild a P-CoT program from a completion.
- `compare`: is an extracted answer correct for its answer kind (numeric within 1e-2, letters).
- `execute`: run untrusted programs in sandboxed worker processes (`ProgramPool`).

The reward built on these lives in `reft.answers.rewards`. Import the submodules directly; this package
imports nothing on purpose.
"""
