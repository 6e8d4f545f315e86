"""The option list of a multiple-choice question, written as MathQA writes it. Pure, no third-party
imports.

MathQA (the ReFT authors' mathqa_test_set.json) ends each question with one line of options:

    "... how far did the oil level drop ?\\na ) 0.036 , b ) 0.36 , c ) 0.6 , d ) 6 , e ) 3.6"

`append_options` writes that line (the synthetic task's multiple-choice form) and `parse_options`
reads it back (the reward-hacking metric, reft.answers.hacking, maps an option letter to its value
with it), so the two cannot drift apart and the values travel inside the question itself: a dataset
file needs no extra field, and real MathQA files are read the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

OPTION_LETTERS = "abcde"
"""MathQA's option letters, in order; a question has at most this many options."""
_OPTION_START_RE = re.compile(r"(?:^|\s,)\s*([a-e])\s\)\s?")
"""The start of one option: "a ) " at the line's start, ", b ) " after the previous option."""
_VALUE_RE = re.compile(
    r"(?:\$|rs\s*\.)?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|-?\.\d+)\s*[^\d/:]*"
)
"""One number, perhaps after a currency, then at most a unit without digits, fractions or ratios
("$ 1,140", "32 kmph", "2 %")."""


def format_options(values: Sequence[str | int | float]) -> str:
    """[14, 21, 7] -> "a ) 14 , b ) 21 , c ) 7" (MathQA's spacing)."""
    if not 1 <= len(values) <= len(OPTION_LETTERS):
        raise ValueError(f"need 1..{len(OPTION_LETTERS)} options, got {len(values)}")
    letters = OPTION_LETTERS[: len(values)]
    return " , ".join(f"{letter} ) {value}" for letter, value in zip(letters, values, strict=True))


def append_options(question: str, values: Sequence[str | int | float]) -> str:
    """The question with its options on a last line of their own, as MathQA's questions end."""
    return f"{question.rstrip()}\n{format_options(values)}"


def parse_options(question: str) -> dict[str, float | None]:
    """{letter: value} of the option list on the question's last line; {} when there is none.

    A value is the option's number without its currency or unit ("$ 1,140" -> 1140.0, "32 kmph" ->
    32.0, "2 %" -> 2.0); it is None when the option is not one number ("data inadequate", "15 / 8
    ohms", "3 : 4"): nothing is guessed. The letters must run a, b, c, ... from the line's
    start. "q ?\\na ) 14 , b ) none" -> {"a": 14.0, "b": None}; "q ?" -> {}.
    """
    line = question.rstrip().rsplit("\n", 1)[-1].strip()
    pieces = _OPTION_START_RE.split(line)
    # ["", "a", "14", "b", "none", ...]: the text before the first option, then letter/text pairs
    letters, texts = pieces[1::2], pieces[2::2]
    if pieces[0] or not letters or "".join(letters) != OPTION_LETTERS[: len(letters)]:
        return {}
    return {letter: _option_value(text) for letter, text in zip(letters, texts, strict=True)}


def has_option_values(questions: Iterable[str]) -> bool:
    """Whether any question ends with an option list holding at least one numeric value."""
    return any(
        any(value is not None for value in parse_options(question).values())
        for question in questions
    )


def _option_value(text: str) -> float | None:
    match = _VALUE_RE.fullmatch(text.strip())
    return float(match.group(1).replace(",", "")) if match else None
