"""Grading: answer extraction, comparison and sandboxed program execution. Torch-free.

- `extract`: pull the final answer out of an N-CoT completion (strict = the paper's rule, or
  lenient), normalise numbers and option letters, and rebuild a P-CoT program from a completion.
- `compare`: is an extracted answer correct for its answer kind (numeric within 1e-2, letters).
- `execute`: run untrusted programs in sandboxed worker processes (`ProgramPool`).
- `rewards`: the one outcome reward built on these (1 / partial / 0) and the batch grading API.
- `grader`: `Grader`, that reward bound to a task, with its program pool kept alive.
- `grading_stats`: the share of each error kind and programs per second, as training and
  evaluation log them.
- `checkers`, `audit`: other answer checkers and `reft grade --audit`.

Import the submodules directly; this package imports nothing on purpose.
"""
