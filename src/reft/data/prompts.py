"""Prompt and target rendering, byte-exact with the paper's code (lqtrung1998/mwp_ReFT).

    prompt        = "Question:\\n" + question.strip() + "\\nAnswer reasoning:\\n"
    N-CoT target  = cot.strip() + "\\nTherefore, the answer is: " + answer      (EOS appended at tokenisation)
    P-CoT target  = program.strip()                                            (EOS appended at tokenisation)

For P-CoT, generation (sampling, evaluation, RL rollouts) starts after the program header, so the model
continues a function whose docstring is the question:

    generation prompt = prompt + 'def solution():\\n    \"\"\"' + question.strip() + '\"\"\"\\n'

Training cuts its text at the same place (`split_training_text`): a P-CoT target that starts with
that header is trained as the generation prompt (no loss) + the program body, so the token ids at the
prompt/program boundary are the ones the model is conditioned on when sampling. The reference trains
on the full program after the plain prompt; with byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2 and
our presets) the newline ending the header then merges with the body's indentation into one token, a
boundary the model never sees when sampling, and a warm-up writes a second `def solution():`.
"""

from __future__ import annotations

from reft.data.example import CotKind, Example

QUESTION_PREFIX = "Question:\n"
REASONING_PREFIX = "\nAnswer reasoning:\n"
ANSWER_TRIGGER = "\nTherefore, the answer is: "
"""The N-CoT final-answer marker; strict extraction reads the text after its LAST occurrence."""
PROGRAM_SIGNATURE = "def solution():\n"


def render_prompt(question: str) -> str:
    """The paper's prompt: "Question:\\n{question}\\nAnswer reasoning:\\n"."""
    return f"{QUESTION_PREFIX}{question.strip()}{REASONING_PREFIX}"


def program_header(question: str) -> str:
    """The start of a P-CoT program: its signature and the question as the docstring."""
    return f'{PROGRAM_SIGNATURE}    """{question.strip()}"""\n'


def render_generation_prompt(question: str, cot: CotKind) -> str:
    """The text a model continues at sampling time (the P-CoT one ends with the program header)."""
    prompt = render_prompt(question)
    return prompt + program_header(question) if cot is CotKind.python else prompt


def render_target(example: Example, cot: CotKind) -> str:
    """The SFT target for `example` (without EOS, which tokenisation appends)."""
    if not example.cot:
        raise ValueError(f"example {example.id!r} has no gold chain of thought to train on")
    if cot is CotKind.python:
        return example.cot.strip()
    return f"{example.cot.strip()}{ANSWER_TRIGGER}{example.answer}"


def solution_text(question: str, completion: str, cot: CotKind) -> str:
    """A sampled completion as the solution written after the plain prompt (what SFT trains on).

    A P-CoT completion continues the program header of the generation prompt, so the header is put
    back; an N-CoT completion is the solution itself. Surrounding whitespace is stripped, as the
    reference strips solutions.
    """
    text = program_header(question) + completion if cot is CotKind.python else completion
    return text.strip()


def continues_program_header(question: str, target: str) -> bool:
    """Whether a P-CoT target starts with this question's program header (so it can be trained as the
    generation prompt + its body); a dataset may write another docstring, or none."""
    return target.startswith(program_header(question))


def split_training_text(question: str, target: str, cot: CotKind) -> tuple[str, str]:
    """(prompt, completion) of one training text: render_prompt(question) + target, cut where sampling
    cuts it.

    A P-CoT target that continues the program header is cut after the header, so `prompt` is exactly
    `render_generation_prompt(question, cot)` and the token ids there match sampling. Any other target
    (N-CoT, or a program with a different or no header) is cut after the plain prompt, as before.
    """
    if cot is CotKind.python and continues_program_header(question, target):
        return render_generation_prompt(question, cot), target[len(program_header(question)) :]
    return render_prompt(question), target
