"""`reft grade`: grade model completions against gold answers, with the training reward's rules.

    reft grade --task gsm8k --cot nl --input completions.jsonl --output graded.jsonl
    reft grade --task svamp --cot python --input programs.jsonl --output graded.jsonl --workers 2

Input: JSON lines with `completion` (the model's text; for --cot python a program defining
solution(), or only its body continuing the paper's header) and `answer` (the gold answer); an
optional `id` is echoed, other fields are ignored. Output: one JSON line per input, same order, with
`id`, `extracted`, `correct`, `reward` and `error`. A summary goes to stdout.

N-CoT answers are extracted leniently by default (any model's final-answer style); --strict uses the
paper's rule, the one the training reward uses. Programs run in the sandboxed ProgramPool.

    reft grade --audit --cot nl --input completions.jsonl --output disagreements.jsonl

--audit grades N-CoT completions under every answer checker (reft strict and lenient,
lm-evaluation-harness's GSM8K strict-match and flexible-extract, math-verify when installed): it
prints the accuracy each would report, their agreement matrix and the kinds of disagreement with
examples, writes every disagreement (with each checker's extraction) to --output and the summary to
OUTPUT.summary.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reft.answers.audit import (
    audit_summary,
    disagreements,
    format_audit,
    run_checkers,
    usable_checkers,
)
from reft.answers.compare import CHOICES, parse_gold
from reft.answers.execute import DEFAULT_TIMEOUT_S, ProgramPool, SandboxConfig
from reft.answers.rewards import DEFAULT_PARTIAL_REWARD, GradeResult, grade_completions
from reft.config import ConfigError
from reft.data.errors import DataError
from reft.data.example import TASK_ANSWER_KIND, AnswerKind, CotKind
from reft.files import check_output_file, write_json_atomic, write_jsonl_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One input line."""

    id: Any
    completion: str
    answer: str
    line: int


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `grade` subcommand."""
    parser = subparsers.add_parser(
        "grade",
        help="grade completions: extract N-CoT answers or run P-CoT programs in a sandbox",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--task",
        choices=sorted(TASK_ANSWER_KIND),
        help="dataset, for its answer kind (numeric or multiple choice); when left out, the kind is "
        "inferred from the gold answers (all option letters a-e -> multiple choice)",
    )
    parser.add_argument(
        "--cot",
        choices=[kind.value for kind in CotKind],
        required=True,
        help="nl: N-CoT text; python: programs",
    )
    parser.add_argument(
        "--input", type=Path, required=True, help="JSON lines: completion, answer[, id]"
    )
    parser.add_argument("--output", type=Path, required=True, help="JSON lines written here")
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds per program (python), or per math-verify item (--audit)",
    )
    parser.add_argument(
        "--audit",
        action="store_true",
        help="nl: compare every answer checker on the input; --output gets the disagreements",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="nl: the paper's extraction rule (the training reward's)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="sandbox workers (python); default: CPU count",
    )
    parser.add_argument(
        "--partial-reward",
        type=_unit_float,
        default=DEFAULT_PARTIAL_REWARD,
        help="reward of a wrong but extracted answer (0 disables)",
    )
    parser.set_defaults(handler=run)


def _field(record: dict, name: str, path: Path, line: int, numbers: bool = True) -> str:
    """Field `name` as text; a number is accepted (as its text) only where `numbers` says so."""
    if name not in record:
        raise DataError("missing field", path, line, name)
    value = record[name]
    accepted = (str, int, float) if numbers else str
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise DataError(f"expected a string, got {type(value).__name__}", path, line, name)
    return value if isinstance(value, str) else str(value)


def read_records(path: Path) -> list[Record]:
    """Parse the input file; DataError naming the file, line and field for any bad line."""
    if not path.is_file():
        raise DataError("no such file", path)
    try:
        # split("\n"), not splitlines(): a JSON string may hold U+2028 and friends unescaped.
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text (byte {error.start})", path) from None
    records = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"not valid JSON ({error.msg})", path, line_number) from None
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", path, line_number)
        # A gold answer may be a JSON number; a completion is model text, never a number.
        completion = _field(record, "completion", path, line_number, numbers=False)
        answer = _field(record, "answer", path, line_number)
        records.append(Record(record.get("id"), completion, answer, line_number))
    return records


def infer_answer_kind(golds: Sequence[str]) -> AnswerKind:
    """Multiple choice when every gold answer is a single option letter, else numeric."""
    letters = [gold.strip().lower() for gold in golds]
    if letters and all(len(letter) == 1 and letter in CHOICES for letter in letters):
        return AnswerKind.multiple_choice
    return AnswerKind.numeric


def _check_golds(records: Sequence[Record], kind: AnswerKind, path: Path) -> None:
    for record in records:
        try:
            parse_gold(record.answer, kind)
        except ValueError as error:
            raise DataError(str(error), path, record.line, "answer") from None


def write_results(path: Path, records: Sequence[Record], results: Sequence[GradeResult]) -> None:
    """One JSON line per record, same order; written to a temporary file, then moved in place."""
    rows = (
        {"id": record.id, "extracted": result.extracted, "correct": result.correct,
         "reward": result.reward, "error": result.error}
        for record, result in zip(records, results, strict=True)
    )  # fmt: skip
    write_jsonl_atomic(path, rows)


def summary(results: Sequence[GradeResult], cot: CotKind, seconds: float) -> str:
    """Accuracy, extraction (or execution) success, errors by kind and throughput."""
    total = len(results) or 1
    correct = sum(result.correct for result in results)
    extracted = sum(result.extracted is not None for result in results)
    errors = Counter(result.error for result in results if result.error is not None)
    what, unit = ("executed", "programs") if cot is CotKind.python else ("extracted", "completions")
    lines = [
        f"  accuracy      {correct / total:8.2%}  ({correct}/{len(results)})",
        f"  {what:<13} {extracted / total:8.2%}  ({extracted}/{len(results)})",
        f"  mean reward   {sum(result.reward for result in results) / total:8.4f}",
        "  errors        "
        + (", ".join(f"{kind} {count}" for kind, count in errors.most_common()) or "none"),
        f"  throughput    {len(results) / max(seconds, 1e-9):8.1f} {unit}/s  ({seconds:.2f} s)",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of `reft grade`."""
    cot = CotKind(args.cot)
    if args.audit and cot is not CotKind.nl:
        raise ConfigError("--audit compares answer checkers of N-CoT text: use it with --cot nl")
    check_output_file(args.output, "--output", inputs=[args.input])
    if args.audit:
        check_output_file(_summary_path(args.output), "--output's summary", inputs=[args.input])
    records = read_records(args.input)
    if not records:
        logger.warning("%s holds no completions: writing an empty %s", args.input, args.output)
    golds = [record.answer for record in records]
    kind = TASK_ANSWER_KIND[args.task] if args.task else infer_answer_kind(golds)
    _check_golds(records, kind, args.input)
    if args.audit:
        return run_audit(args, records, kind)
    completions = [record.completion for record in records]
    options = {"strict": args.strict, "partial_reward": args.partial_reward}
    started = time.perf_counter()
    if cot is CotKind.python:
        with ProgramPool(
            workers=args.workers, config=SandboxConfig(timeout_s=args.timeout)
        ) as pool:
            started = time.perf_counter()  # throughput of grading, not of starting the pool
            results = grade_completions(completions, golds, kind, cot, executor=pool, **options)
    else:
        results = grade_completions(completions, golds, kind, cot, **options)
    seconds = time.perf_counter() - started
    write_results(args.output, records, results)
    mode = (
        ""
        if cot is CotKind.python
        else (", strict extraction" if args.strict else ", lenient extraction")
    )
    task = args.task or "inferred"
    print(
        f"reft grade: {len(records)} completions, task {task} ({kind.value}), cot {cot.value}{mode}"
    )
    print(summary(results, cot, seconds))
    print(f"  output        {args.output}")
    return 0


def _summary_path(output: Path) -> Path:
    return output.with_name(output.stem + ".summary.json")


def run_audit(args: argparse.Namespace, records: Sequence[Record], kind: AnswerKind) -> int:
    """`reft grade --audit`: every checker on the same completions; disagreements to --output."""
    names, missing = usable_checkers(kind)
    completions = [record.completion for record in records]
    golds = [record.answer for record in records]
    verdicts = run_checkers(names, completions, golds, kind, args.timeout, args.workers or 2)
    rows = disagreements(verdicts, completions, golds, [record.id for record in records])
    for row in rows:  # the input's line number, as in every other message about the file
        row["line"] = records[row.pop("index")].line
    summary = audit_summary(verdicts, rows, missing)
    write_jsonl_atomic(args.output, rows)
    write_json_atomic(_summary_path(args.output), summary)
    print(f"reft grade --audit: {len(records)} completions, {kind.value} answers, checkers "
          f"{', '.join(names)}" + (f"; left out: {', '.join(missing)}" if missing else ""))  # fmt: skip
    print(format_audit(summary, rows))
    print(f"  output        {args.output} (disagreements), {_summary_path(args.output)}")
    return 0
