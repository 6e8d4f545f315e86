"""Prompt and target rendering, byte-exact against the paper's format."""

from __future__ import annotations

import pytest

from reft.data.example import AnswerKind, CotKind, Example
from reft.data.prompts import render_generation_prompt, render_prompt, render_target

NL = Example("svamp_0", "  How many? ", "203.0", AnswerKind.numeric, "svamp", "29 * 7 = 203\n\n")
PROGRAM = 'def solution():\n    """How many?"""\n    result = 29 * 7\n    return result\n'
PY = Example("svamp_0", "How many?", "203.0", AnswerKind.numeric, "svamp", PROGRAM)


def test_prompt_is_byte_exact():
    assert render_prompt("  How many? ") == "Question:\nHow many?\nAnswer reasoning:\n"


def test_nl_target_appends_the_answer_trigger_and_gold_value():
    assert render_target(NL, CotKind.nl) == "29 * 7 = 203\nTherefore, the answer is: 203.0"


def test_python_target_is_the_stripped_program():
    assert render_target(PY, CotKind.python) == PROGRAM.rstrip("\n")


def test_python_generation_prompt_ends_with_the_program_header():
    assert render_generation_prompt(" How many?", CotKind.python) == (
        'Question:\nHow many?\nAnswer reasoning:\ndef solution():\n    """How many?"""\n'
    )
    assert render_generation_prompt("How many?", CotKind.nl) == render_prompt("How many?")


def test_sft_text_continues_the_generation_prompt_for_python():
    """The header the model is given at sampling time is what it learned to write in SFT."""
    full = render_prompt(PY.question) + render_target(PY, CotKind.python)
    assert full.startswith(render_generation_prompt(PY.question, CotKind.python))


def test_target_without_gold_cot_is_an_error():
    bare = Example("x", "q", "1", AnswerKind.numeric, "svamp")
    with pytest.raises(ValueError, match="no gold chain of thought"):
        render_target(bare, CotKind.nl)
