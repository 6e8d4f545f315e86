"""The one record every dataset is turned into, and the small enums that describe it.

No third-party imports here: the grader and the sandboxed executor import these types too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class AnswerKind(str, Enum):
    """How a gold answer is compared with a prediction."""

    numeric = "numeric"
    """A number; predictions within 1e-2 of it are correct (the paper's tolerance)."""
    multiple_choice = "multiple_choice"
    """A letter a-e (MathQA); compared case-insensitively."""


class CotKind(str, Enum):
    """The kind of chain of thought a model writes."""

    nl = "nl"
    """N-CoT: natural-language reasoning ending with "\\nTherefore, the answer is: X"."""
    python = "python"
    """P-CoT: a Python program `def solution(): ... return result`; executing it gives the answer."""


# The answer kind of every dataset reft knows by name. A file of an unknown dataset is numeric
# unless its gold answers are all single letters a-e (see loaders.infer_answer_kind).
TASK_ANSWER_KIND: dict[str, AnswerKind] = {
    "gsm8k": AnswerKind.numeric,
    "svamp": AnswerKind.numeric,
    "mathqa": AnswerKind.multiple_choice,
    "mathqa-numeric": AnswerKind.numeric,
    "synth": AnswerKind.numeric,
    "synth-mc": AnswerKind.multiple_choice,
}
SYNTH_CHOICE_SOURCE = "synth-mc"
"""Source and item id prefix of the synthetic task's multiple-choice form (SynthConfig.choices)."""


@dataclass(frozen=True)
class Example:
    """One math word problem.

    `answer` is kept as the dataset's string ("203.0", "1000", "a"): parsing it is the grader's job,
    so that a record round-trips unchanged.
    """

    id: str
    question: str
    answer: str
    answer_kind: AnswerKind
    source: str
    """Dataset name ("gsm8k", "svamp", "synth", ...) or the file stem for unknown files."""
    cot: str | None = None
    """Gold chain of thought as the dataset has it (N-CoT text or a P-CoT program); the N-CoT answer
    trigger is appended by `prompts.render_target`, not stored here."""

    def to_reft_json(self) -> dict[str, str]:
        """The record in the ReFT authors' JSON format (item_id / question / answer_cot / answer_value)."""
        record = {"item_id": self.id, "question": self.question}
        if self.cot is not None:
            record["answer_cot"] = self.cot
        record["answer_value"] = self.answer
        return record
