"""Answer extraction: strict (the paper's rule) and lenient N-CoT, numbers, letters, programs."""

from __future__ import annotations

import pytest

from reft.answers.extract import (
    extract_lenient,
    extract_nl_answer,
    extract_program,
    extract_strict,
    format_number,
    normalize_choice,
    normalize_number,
    parse_number,
    parse_program_value,
)
from reft.data.example import AnswerKind
from reft.data.prompts import ANSWER_TRIGGER, program_header

NUM, MC = AnswerKind.numeric, AnswerKind.multiple_choice
T = ANSWER_TRIGGER  # "\nTherefore, the answer is: "


@pytest.mark.parametrize(
    ("text", "kind", "expected", "reason"),
    [
        (f"2 + 3 = 5{T}5", NUM, "5", "the paper's target format"),
        (f"reasoning{T}203.0", NUM, "203", "gold answers like '203.0' become canonical '203'"),
        (f"x{T}1,000", NUM, "1000", "the paper's parse drops commas"),
        (f"x{T}72.", NUM, "72", "float('72.') parses: trailing dot kept by the paper's rule"),
        (f"x{T}-2.5", NUM, "-2.5", "negative decimals"),
        (f"x{T} 18 \n", NUM, "18", "surrounding whitespace is stripped"),
        (f"x{T}4{T}7", NUM, "7", "the LAST trigger wins"),
        (f"x{T}72 apples", NUM, None, "strict: units make float() fail -> nothing extracted"),
        (f"x{T}$72", NUM, None, "strict: currency is not accepted"),
        (f"x{T}nan", NUM, None, "non-finite values are never answers"),
        (f"x{T}inf", NUM, None, "non-finite values are never answers"),
        (f"x{T}", NUM, None, "empty answer"),
        (f"x{T}18\n\nQuestion: next one", NUM, None, "strict: text after the answer breaks it"),
        ("Therefore, the answer is: 5", NUM, None, "strict needs the newline before the trigger"),
        ("The answer is 5", NUM, None, "strict ignores other final-answer forms"),
        ("#### 72", NUM, None, "strict ignores GSM8K's #### form"),
        (f"x{T}" + "9" * 200, NUM, None, "absurdly long spans are rejected without parsing"),
        (f"x{T}c", MC, "c", "a letter"),
        (f"x{T}C", MC, "c", "letters are lower-cased"),
        (f'x{T}"b"', MC, "b", "the paper's rule drops quotes"),
        (f"x{T}(c)", MC, None, "strict: only a bare letter is an option"),
        (f"x{T}f", MC, None, "only a-e are options"),
        (f"x{T}ab", MC, None, "two letters are not an option"),
    ],
)
def test_strict(text, kind, expected, reason):
    assert extract_strict(text, kind) == expected, reason
    assert extract_nl_answer(text, kind, strict=True) == expected, reason


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        (f"reasoning{T}18", "18", "the paper's trigger"),
        (
            "so Therefore, the answer is 18.",
            "18",
            "trigger without newline and colon, trailing dot",
        ),
        ("therefore the answer is: $1,250.50 per month", "1250.5", "case, currency, commas, units"),
        ("48/2 = <<48/2=24>>24 clips\n#### 72", "72", "GSM8K's #### form beats earlier numbers"),
        ("#### 1,000", "1000", "#### with commas"),
        ("We get \\boxed{18}.", "18", "LaTeX boxed"),
        ("\\boxed{\\frac{3}{4}}", "0.75", "boxed fraction with nested braces"),
        ("\\boxed{\\dfrac{1}{8}}", "0.125", "dfrac"),
        ("The answer is 42", "42", "'The answer is N'"),
        ("So the final answer is: -7 degrees", "-7", "'final answer is:' with a unit"),
        ("Q: how many?\nA: 12 apples", "12", "'A: N' line"),
        ("Answer: 3/4", "0.75", "'Answer: N' line with a simple fraction"),
        ("Final answer: 50%", "50", "percent sign dropped"),
        ("The answer is 5 + 3 = 8.", "8", "in the answer span, the value after the last '=' wins"),
        ("The answer is 8.\n#### 9", "9", "form order: #### is preferred over 'the answer is'"),
        (f"The answer is 4.{T}5", "5", "form order: the paper's trigger comes first"),
        (
            "The answer is 3. Later: the answer is 4.",
            "4",
            "within a form, the last occurrence wins",
        ),
        (
            "The answer is unclear. Total is 15 cats.",
            "15",
            "unparseable form falls back to last number",
        ),
        ("She has 3 cats and 4 dogs, so 7 pets", "7", "fallback: the last number in the text"),
        ("It costs \u22125 dollars", "-5", "fallback with a unicode minus"),
        ("no numbers at all", None, "nothing to extract"),
        ("", None, "empty completion"),
    ],
)
def test_lenient_numeric(text, expected, reason):
    assert extract_lenient(text, NUM) == expected, reason
    assert extract_nl_answer(text, NUM, strict=False) == expected, reason


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        (f"x{T}c", "c", "the paper's trigger"),
        ("The answer is (B).", "b", "parenthesised capital letter"),
        ("Therefore, the answer is: d ) 25", "d", "MathQA's option format 'd ) 25'"),
        ("answer is option e", "e", "'option e'"),
        ("Answer: a", "a", "'Answer: a' line"),
        ("\\boxed{C}", "c", "boxed letter"),
        ("I think it is (c) since 5 > 3", "c", "fallback: a parenthesised letter"),
        ("so a ) 12 is too small but c ) 14 fits", "c", "fallback: the last 'x )' option"),
        ("The answer is 14", None, "a number is not an option letter; no letter elsewhere"),
        ("a cat and a dog", None, "the article 'a' is not an option"),
    ],
)
def test_lenient_choice(text, expected, reason):
    assert extract_lenient(text, MC) == expected, reason


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        ("1,000", "1000", "thousands commas"),
        ("1,234,567.5", "1234567.5", "several comma groups and decimals"),
        ("$18.50", "18.5", "dollar sign"),
        ("-$5", "-5", "sign before currency"),
        ("$-5", "-5", "sign after currency"),
        ("€3", "3", "other currency"),
        ("\\$4", "4", "LaTeX-escaped dollar"),
        ("50%", "50", "percent sign"),
        ("72 clips.", "72", "units and trailing punctuation"),
        (".5", "0.5", "leading-dot decimal"),
        ("0.50", "0.5", "trailing zeros"),
        ("-3", "-3", "negative"),
        ("\u22123", "-3", "unicode minus"),
        ("3/4", "0.75", "simple fraction"),
        ("-3/4", "-0.75", "negative fraction"),
        ("1 1/2 cups", "1.5", "mixed number"),
        ("\\frac{2}{5}", "0.4", "LaTeX fraction"),
        ("3/0", None, "division by zero is no number"),
        ("1{,}000", "1000", "LaTeX thousands separator"),
        ("x2 and v1.5", None, "digits glued to a word are not numbers"),
        ("5 apples and 6", "5", "the first number is taken"),
        ("1e3", "1000", "scientific notation"),
        ("twelve", None, "number words are not parsed"),
    ],
)
def test_normalize_number(text, expected, reason):
    assert normalize_number(text) == expected, reason


def test_normalize_number_last():
    assert normalize_number("5 apples and 6 pears", last=True) == "6"


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        ("a", "a", "bare letter"),
        ("A", "a", "capital"),
        ("(a)", "a", "parentheses"),
        ("a )", "a", "MathQA's spacing"),
        ("a)", "a", "closing parenthesis"),
        ("b.", "b", "trailing dot"),
        ("[c]", "c", "brackets"),
        ("option d", "d", "'option d'"),
        ("Choice (e)", "e", "'choice (e)'"),
        ("**E**", "e", "markdown bold"),
        ("c ) 25", "c", "letter followed by its option value"),
        ("answer", None, "a word starting with a is not option a"),
        ("about 5", None, "a word starting with a is not option a"),
        ("f", None, "only a-e"),
        ("", None, "empty"),
    ],
)
def test_normalize_choice(text, expected, reason):
    assert normalize_choice(text) == expected, reason


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        ("1,000", 1000.0, "commas dropped"),
        (" 72. ", 72.0, "whitespace and trailing dot"),
        ("1e3", 1000.0, "float() syntax"),
        ("72 apples", None, "units fail"),
        ("nan", None, "non-finite"),
        ("-inf", None, "non-finite"),
        ("", None, "empty"),
    ],
)
def test_parse_number(text, expected, reason):
    assert parse_number(text) == expected, reason


@pytest.mark.parametrize(
    ("value", "expected", "reason"),
    [
        (72.0, "72", "integral floats lose '.0'"),
        (0.75, "0.75", "others use repr"),
        (-3.0, "-3", "negative integral"),
        (1e20, "1e+20", "huge values keep float notation"),
    ],
)
def test_format_number(value, expected, reason):
    assert format_number(value) == expected, reason


@pytest.mark.parametrize(
    ("value", "kind", "expected", "reason"),
    [
        ("203.0", NUM, "203", "a float's repr from the sandbox"),
        (
            "12345678901234567890",
            NUM,
            "1.2345678901234567e+19",
            "beyond 1e15 the float repr is kept",
        ),
        ("0.3333333333333333", NUM, "0.3333333333333333", "a fraction's float"),
        ("72 apples", NUM, None, "a returned string that is not a number"),
        ("A", MC, "a", "a returned letter"),
        ("(a)", MC, None, "strict letter rule"),
    ],
)
def test_parse_program_value(value, kind, expected, reason):
    assert parse_program_value(value, kind) == expected, reason


QUESTION = "Tom has 3 apples and buys 4 more. How many now?"
BODY = "    total = 3 + 4\n    return total"


@pytest.mark.parametrize(
    ("completion", "expected", "reason"),
    [
        (f"def solution():\n{BODY}", f"def solution():\n{BODY}", "full program used as is"),
        (
            f"import math\n\ndef solution():\n{BODY}",
            f"import math\n\ndef solution():\n{BODY}",
            "imports before the function",
        ),
        (BODY, f"def solution():\n{BODY}", "body continuing the paper's header gets the signature"),
        (
            f"```python\ndef solution():\n{BODY}\n```\nDone.",
            f"def solution():\n{BODY}\n",
            "markdown fence removed",
        ),
        ("", "def solution():\n", "empty completion: a program that fails to compile"),
    ],
)
def test_extract_program(completion, expected, reason):
    assert extract_program(completion) == expected, reason


def test_body_after_header_runs_like_full_program():
    """The model continues prompt + header; prepending the signature gives a valid function."""
    header = program_header(QUESTION)
    namespace: dict = {}
    exec(extract_program(BODY), namespace)
    full: dict = {}
    exec(header + BODY, full)
    assert namespace["solution"]() == full["solution"]() == 7
