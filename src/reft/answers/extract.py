"""Pull the final answer out of a model's text, and the program out of a P-CoT completion. Pure.

Two modes for natural-language chains of thought (N-CoT):

- strict (the paper's rule, used for the training reward): the text after the LAST
  "\\nTherefore, the answer is: " is the answer, parsed as the paper's code parses it.
  Numeric: drop commas, strip, Python float(); "1,000" -> "1000", "72." -> "72", "72 apples" -> None.
  Multiple choice: lower-case, drop quotes, strip; it must then be one letter a-e: "C" -> "c".
- lenient (for grading any model's output, e.g. `reft grade`): the first of these forms that is
  present wins, and within a form its last occurrence that parses:
  1. the paper's trigger, loosely: "Therefore, the answer is 18." -> "18"
  2. GSM8K's "#### 18"                                               -> "18"
  3. LaTeX "\\boxed{18}" / "\\boxed{\\frac{3}{4}}"                      -> "18" / "0.75"
  4. "The answer is 18" / "the final answer is: $18"                   -> "18"
  5. a line "A: 18" / "Answer: 18" / "Final answer: 18"                -> "18"
  6. fallback: the last number in the text (multiple choice: the last "(c)", "c )", "option c")
  Inside the chosen span, text after the last "=" is preferred ("5 + 3 = 8" -> "8"), then the
  first number in it is taken (see normalize_number), or the option letter (see normalize_choice).

Answers are returned as canonical strings: numbers as "1000" or "0.75" (format_number), letters as
"a"-"e"; None when nothing could be extracted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from reft.data.example import AnswerKind
from reft.data.prompts import ANSWER_TRIGGER as NL_ANSWER_TRIGGER
from reft.data.prompts import PROGRAM_SIGNATURE

MAX_ANSWER_CHARS = 100
"""A strict answer span longer than this is not a number (and float() on it is not attempted)."""

_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
_NUMBER_RE = re.compile(
    rf"(?<![\w.])(?P<sign>-)?(?P<whole>\d+\s+(?=\d+\s*/\s*\d))?(?P<num>{_NUMBER})"
    rf"(?:\s*/\s*(?P<den>{_NUMBER}))?"
)
_CURRENCY_RE = re.compile(r"\\?[$€£¥₹]|\b(?:USD|EUR|GBP|Rs\.?)\s*")
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_CHOICE_RE = re.compile(r"(?:option|choice)?\s*[(\[]?\s*([a-e])\s*[)\].:,;]?(?=\s|$|[)\].:,;])")
_CHOICE_ANYWHERE_RE = re.compile(r"\b(?:option|choice)\s*\(?([a-e])\b|\(([a-e])\)|\b([a-e])\s+\)")
_CHOICE_NOISE = str.maketrans("", "", "\"'*`")
_TRIGGER_RE = re.compile(r"therefore,?\s*the\s+(?:final\s+)?answer\s+is\s*:?", re.IGNORECASE)
_HASHES_RE = re.compile(r"####")
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\s*:?", re.IGNORECASE)
_ANSWER_LINE_RE = re.compile(
    r"^[ \t]*(?:final\s+answer|answer|a)[ \t]*:", re.IGNORECASE | re.MULTILINE
)
_BOXED_RE = re.compile(r"\\boxed\s*\{")


def format_number(value: float) -> str:
    """Canonical text of a number: integral values without ".0" (72.0 -> "72"), others as repr."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def parse_number(text: str) -> float | None:
    """The paper's numeric parse: drop commas, strip, Python float(); None if that fails.

    "1,000" -> 1000.0, " 72. " -> 72.0, "1e3" -> 1000.0; "72 apples", "nan", "inf" -> None.
    """
    text = text.replace(",", "").strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _strict_number(span: str) -> str | None:
    value = parse_number(span)
    return None if value is None else format_number(value)


def _strict_choice(span: str) -> str | None:
    letter = span.lower().replace('"', "").replace("'", "").strip()
    return letter if len(letter) == 1 and letter in "abcde" else None


def _clean_number_text(text: str) -> str:
    text = text.replace("\u2212", "-").replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    text = _LATEX_FRAC_RE.sub(r"(\1)/(\2)", text).replace("(", " ").replace(")", " ")
    return _CURRENCY_RE.sub("", text)


def _number_value(match: re.Match[str]) -> float | None:
    value = float(match["num"].replace(",", ""))
    if match["den"] is not None:
        denominator = float(match["den"].replace(",", ""))
        if denominator == 0:
            return None
        value /= denominator
    if match["whole"]:
        value += float(match["whole"])
    value = -value if match["sign"] else value
    return value if math.isfinite(value) else None


def normalize_number(text: str, *, last: bool = False) -> str | None:
    """The first (or last) number in `text`, lenient about how it is written.

    Accepts thousands commas ("1,000" -> "1000"), currency ("$18.50" -> "18.5", "-$5" -> "-5"),
    percent signs and units ("50%" -> "50", "72 clips." -> "72"), decimals (".5" -> "0.5"),
    negatives ("-3", "\u22123"), simple fractions ("3/4" -> "0.75"; "1 1/2" -> "1.5";
    "\\frac{3}{4}" -> "0.75") and trailing punctuation ("18." -> "18"). A number glued to letters
    before it ("x2", "v1.5") is not a number. Returns None when there is no number.
    """
    matches = list(_NUMBER_RE.finditer(_clean_number_text(text)))
    for match in reversed(matches) if last else matches:
        value = _number_value(match)
        if value is not None:
            return format_number(value)
    return None


def _lenient_number(span: str) -> str | None:
    if "=" in span:
        after = normalize_number(span.rsplit("=", 1)[1])
        if after is not None:
            return after
    return normalize_number(span)


def normalize_choice(text: str) -> str | None:
    """The option letter a-e that `text` starts with, in its usual spellings.

    "a", "A", "(a)", "a )", "a)", "a.", "[b]", "option c", "choice (d)", "**E**", "c ) 25" -> the
    letter; "answer", "about 5" -> None (a letter glued to a word is not an option).
    """
    text = text.translate(_CHOICE_NOISE).strip().lower()
    match = _CHOICE_RE.match(text)
    return match.group(1) if match else None


STRICT_PARSERS: dict[AnswerKind, Callable[[str], str | None]] = {
    AnswerKind.numeric: _strict_number,
    AnswerKind.multiple_choice: _strict_choice,
}
LENIENT_PARSERS: dict[AnswerKind, Callable[[str], str | None]] = {
    AnswerKind.numeric: _lenient_number,
    AnswerKind.multiple_choice: normalize_choice,
}


def extract_strict(text: str, kind: AnswerKind) -> str | None:
    """The paper's rule: parse what follows the last "\\nTherefore, the answer is: "."""
    index = text.rfind(NL_ANSWER_TRIGGER)
    if index < 0:
        return None
    return STRICT_PARSERS[kind](text[index + len(NL_ANSWER_TRIGGER) :])


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _boxed_spans(text: str) -> list[str]:
    """Contents of every \\boxed{...}, with nested braces."""
    spans = []
    for match in _BOXED_RE.finditer(text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                spans.append(text[start:index])
                break
    return spans


def _marker_spans(pattern: re.Pattern[str], text: str) -> list[str]:
    return [_first_line(text[match.end() :]) for match in pattern.finditer(text)]


_LENIENT_FORMS: tuple[Callable[[str], list[str]], ...] = (
    lambda text: _marker_spans(_TRIGGER_RE, text),
    lambda text: _marker_spans(_HASHES_RE, text),
    _boxed_spans,
    lambda text: _marker_spans(_ANSWER_IS_RE, text),
    lambda text: _marker_spans(_ANSWER_LINE_RE, text),
)


def _fallback(text: str, kind: AnswerKind) -> str | None:
    if kind is AnswerKind.numeric:
        return normalize_number(text, last=True)
    matches = list(_CHOICE_ANYWHERE_RE.finditer(text.lower()))
    return next((group for group in matches[-1].groups() if group), None) if matches else None


def extract_lenient(text: str, kind: AnswerKind) -> str | None:
    """The answer in any common final-answer form (see the module docstring for the order)."""
    parse = LENIENT_PARSERS[kind]
    for spans in (form(text) for form in _LENIENT_FORMS):
        for span in reversed(spans):
            answer = parse(span)
            if answer is not None:
                return answer
    return _fallback(text, kind)


def extract_nl_answer(text: str, kind: AnswerKind, *, strict: bool = True) -> str | None:
    """The final answer of an N-CoT completion as a canonical string, or None.

    strict=True is the paper's rule (the training reward); strict=False the lenient one.
    """
    return extract_strict(text, kind) if strict else extract_lenient(text, kind)


def parse_program_value(value: str, kind: AnswerKind) -> str | None:
    """A value returned by a program (already a plain string) as a canonical answer, or None.

    Numbers use the paper's float parse ("203.0" -> "203", "1,000" -> "1000"); letters the strict
    choice rule ("A" -> "a").
    """
    return STRICT_PARSERS[kind](value)


def _strip_code_fence(text: str) -> str:
    match = re.search(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)(?:```|$)", text, re.DOTALL)
    return match.group(1) if match else text


def extract_program(completion: str) -> str:
    """The program to execute for a P-CoT completion.

    A completion that defines `solution()` itself (anywhere, e.g. after imports) is used as is; one
    that is only the body continuing the paper's header (`prompts.program_header`: the signature
    and the question as docstring) gets the signature put back in front. A markdown code fence around the code is removed.

    "def solution():\\n    return 2" -> unchanged; "    x = 2\\n    return x" ->
    "def solution():\\n    x = 2\\n    return x".
    """
    text = _strip_code_fence(completion)
    if re.search(r"^def[ \t]+solution[ \t]*\(", text, re.MULTILINE):
        return text
    return PROGRAM_SIGNATURE + text
