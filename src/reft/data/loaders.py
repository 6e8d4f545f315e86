"""Read every dataset format reft knows into `Example` records.

Formats (detected from each record's fields, so a file or a Hugging Face dataset goes through the same
parser):

* ReFT JSON (the authors' release and `reft data synth`): a JSON array of
  ``{"item_id", "question", "answer_cot"?, "answer_value"}``. Also accepted as JSON lines.
* GSM8K original: JSON lines of ``{"question", "answer"}`` where the answer's last line is
  ``#### N``. The chain of thought is the text before that line; N loses its thousands commas.
  ``<<48/2=24>>`` calculator marks are kept unless ``strip_calculator=True``.

Dataset specs accepted by `load_dataset` (and so by every ``--dataset`` / ``dataset=`` option):

* a path to a ``.json`` / ``.jsonl`` file;
* ``synth:SPLIT`` or ``synth:SPLIT:N`` — the built-in synthetic task, generated in memory;
* ``hf:NAME[:CONFIG]:SPLIT`` — a Hugging Face dataset (needs the ``datasets`` extra and network).

Nothing is dropped silently: a record that cannot be parsed raises `DataError` naming the file, the
line and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reft.data.errors import DataError
from reft.data.example import TASK_ANSWER_KIND, AnswerKind, CotKind, Example
from reft.files import write_text_atomic

GSM8K_ANSWER_MARK = "####"
CALCULATOR_MARK = re.compile(r"<<[^<>]*>>")
CHOICE_LETTERS = frozenset("abcde")


def load_dataset(
    spec: str | Path,
    *,
    answer_kind: AnswerKind | None = None,
    strip_calculator: bool = False,
) -> list[Example]:
    """Load the examples named by `spec` (a file path, ``synth:SPLIT[:N]`` or ``hf:...``)."""
    text = str(spec)
    if text.startswith("synth:"):
        return _load_synth(text)
    if text.startswith("hf:"):
        return _load_hf(text, answer_kind=answer_kind, strip_calculator=strip_calculator)
    path = Path(spec)
    if not path.is_file():
        raise DataError(
            "no such file (a dataset is a .json/.jsonl path, synth:SPLIT[:N] or hf:NAME[:CONFIG]:SPLIT)",
            path=path,
        )
    rows = _read_rows(path)
    return parse_records(
        rows,
        path=path,
        source=_source_from_path(path),
        answer_kind=answer_kind,
        strip_calculator=strip_calculator,
    )


def parse_records(
    rows: Iterable[tuple[int, Any]],
    *,
    path: str | Path,
    source: str | None = None,
    answer_kind: AnswerKind | None = None,
    strip_calculator: bool = False,
) -> list[Example]:
    """Turn ``(line_number, record_dict)`` pairs into examples; the format is detected per record.

    `source` defaults to the prefix of the ReFT ``item_id`` ("svamp_12" -> "svamp"), which also wins
    where it names a known variant of `source` ("synth-mc_train_0" in synth_train.json). The answer
    kind comes from `answer_kind`, else from the source's known kind, else it is multiple choice
    only if every gold answer is a letter a-e.
    """
    parsed = [_parse_record(record, path, line, strip_calculator) for line, record in rows]
    if not parsed:
        raise DataError("the dataset is empty", path=path)
    from_ids = _source_from_id(parsed[0][0]["id"])
    # The ids may name a variant of the file's dataset: synth-mc_* items in synth_train.json.
    if source is None or (from_ids in TASK_ANSWER_KIND and from_ids.startswith(f"{source}-")):
        source = from_ids
    kind = answer_kind or TASK_ANSWER_KIND.get(source)
    if kind is None:
        letters = all(fields["answer"].strip().lower() in CHOICE_LETTERS for fields, _ in parsed)
        kind = AnswerKind.multiple_choice if letters else AnswerKind.numeric
    examples = []
    for fields, line in parsed:
        fields["answer"] = _validate_answer(fields["answer"], kind, path, line)
        examples.append(Example(answer_kind=kind, source=source, **fields))
    _check_unique_ids(examples, [line for _, line in parsed], path)
    return examples


def detect_cot_kind(examples: list[Example]) -> CotKind | None:
    """The kind of gold chain of thought the examples carry (None if they carry none)."""
    cots = [example.cot for example in examples if example.cot]
    if not cots:
        return None
    programs = sum(cot.lstrip().startswith("def solution") for cot in cots)
    return CotKind.python if programs * 2 > len(cots) else CotKind.nl


def require_cot(examples: list[Example], cot: CotKind, path: str) -> None:
    """Fail if the examples cannot train `cot` (no gold chain of thought, or the other kind)."""
    for example in examples:
        if not example.cot:
            raise DataError(
                f"item {example.id!r} has no gold chain of thought, needed for training",
                path=path,
                field="answer_cot",
            )
    found = detect_cot_kind(examples)
    if found is not cot:
        raise DataError(
            f"the gold chains of thought are {found.value}, but cot={cot.value} was asked for",
            path=path,
            field="answer_cot",
        )


def _parse_record(
    record: Any, path: str | Path, line: int, strip_calculator: bool
) -> tuple[dict[str, Any], int]:
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", path, line)
    if "answer_value" in record:
        fields = {
            "id": _text_field(record, "item_id", path, line),
            "question": _text_field(record, "question", path, line),
            "answer": _text_field(record, "answer_value", path, line, allow_number=True),
            "cot": _text_field(record, "answer_cot", path, line)
            if "answer_cot" in record
            else None,
        }
    elif "answer" in record:
        cot, answer = _split_gsm8k_answer(_text_field(record, "answer", path, line), path, line)
        if strip_calculator:
            cot = CALCULATOR_MARK.sub("", cot)
        fields = {
            "id": str(record.get("id", f"{Path(path).stem}_{line}")),
            "question": _text_field(record, "question", path, line),
            "answer": answer,
            "cot": cot,
        }
    else:
        raise DataError(
            "missing the answer: expected 'answer_value' (ReFT format) or 'answer' (GSM8K format)",
            path,
            line,
            field="answer_value",
        )
    if not fields["question"].strip():
        raise DataError("the question is empty", path, line, field="question")
    return fields, line


def _text_field(
    record: dict[str, Any], name: str, path: str | Path, line: int, allow_number: bool = False
) -> str:
    if name not in record:
        raise DataError("missing field", path, line, field=name)
    value = record[name]
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", path, line, field=name)
    return value


def _split_gsm8k_answer(answer: str, path: str | Path, line: int) -> tuple[str, str]:
    """'...reasoning...\\n#### 1,000' -> ('...reasoning...', '1000')."""
    cot, mark, value = answer.rpartition(GSM8K_ANSWER_MARK)
    if not mark:
        raise DataError(
            f"no '{GSM8K_ANSWER_MARK} N' line in the answer", path, line, field="answer"
        )
    return cot.strip(), value.strip().replace(",", "")


def _validate_answer(answer: str, kind: AnswerKind, path: str | Path, line: int) -> str:
    answer = answer.strip()
    if kind is AnswerKind.multiple_choice:
        if answer.lower() not in CHOICE_LETTERS:
            raise DataError(
                f"multiple-choice answer must be a letter a-e, got {answer!r}",
                path,
                line,
                field="answer_value",
            )
        return answer.lower()
    try:
        float(answer.replace(",", ""))
    except ValueError:
        raise DataError(
            f"numeric answer expected, got {answer!r}", path, line, field="answer_value"
        ) from None
    return answer


def _check_unique_ids(examples: list[Example], lines: list[int], path: str | Path) -> None:
    seen: dict[str, int] = {}
    for example, line in zip(examples, lines, strict=True):
        if example.id in seen:
            raise DataError(
                f"duplicate id {example.id!r} (first seen on line {seen[example.id]})",
                path,
                line,
                field="item_id",
            )
        seen[example.id] = line


def _read_rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, decoded record) for a JSON array file or a JSON lines file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a leading byte-order mark is skipped
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 text: {error}", path) from None
    if not text.strip():
        raise DataError("the file is empty", path)
    if text.lstrip().startswith("["):
        return list(_iter_json_array(text, path))
    return list(_iter_json_lines(text, path))


def _iter_json_lines(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"malformed JSON: {error.msg} (column {error.colno})", path, number
            ) from None


def _iter_json_array(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Decode a JSON array element by element, so each record knows the line it starts on."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    line, counted_to = 1, 0
    while True:
        position = _skip_space(text, position)
        if position < len(text) and text[position] == "]":
            return
        line += text.count("\n", counted_to, position)
        counted_to = position
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise DataError(f"malformed JSON: {error.msg}", path, error.lineno) from None
        yield line, record
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position >= len(text) or text[position] != "]":
            bad_line = line + text.count("\n", counted_to, position)
            raise DataError("malformed JSON: expected ',' or ']' after a record", path, bad_line)


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _source_from_path(path: Path) -> str | None:
    """Known dataset name from a file name (svamp_nl.json -> svamp), or None to use the item ids."""
    stem = path.stem.lower()
    for name in sorted(TASK_ANSWER_KIND, key=len, reverse=True):
        if stem == name or stem.startswith((f"{name}_", f"{name}-")) or path.parent.name == name:
            return name
    return None


def _source_from_id(item_id: str) -> str:
    """ "svamp_12" -> "svamp", "mathqa-numeric_3" -> "mathqa-numeric", "synth_dev_4" -> "synth"."""
    for prefix in (item_id.rsplit("_", 1)[0], item_id.split("_", 1)[0]):
        if prefix in TASK_ANSWER_KIND:
            return prefix
    return item_id.rsplit("_", 1)[0] if "_" in item_id else "custom"


def _load_synth(spec: str) -> list[Example]:
    from reft.data.synthetic import DEFAULT_SPLIT_SIZES, SynthConfig, generate_examples

    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[1] not in DEFAULT_SPLIT_SIZES:
        raise DataError(
            f"expected synth:SPLIT[:N] with SPLIT in {sorted(DEFAULT_SPLIT_SIZES)}", spec
        )
    split = parts[1]
    try:
        count = int(parts[2]) if len(parts) == 3 else DEFAULT_SPLIT_SIZES[split]
    except ValueError:
        raise DataError(f"N must be an integer, got {parts[2]!r}", spec) from None
    return generate_examples(SynthConfig(), split=split, n=count)


def _load_hf(spec: str, *, answer_kind: AnswerKind | None, strip_calculator: bool) -> list[Example]:
    parts = spec.split(":")[1:]
    if len(parts) not in (2, 3):
        raise DataError("expected hf:NAME[:CONFIG]:SPLIT", spec)
    try:
        import datasets
    except ImportError:
        raise DataError(
            "Hugging Face datasets need the extra: pip install 'reft[datasets]'", spec
        ) from None
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    rows = datasets.load_dataset(name, config, split=split)
    source = name.rsplit("/", 1)[-1].lower()
    return parse_records(
        enumerate(rows, start=1),
        path=spec,
        source=source if source in TASK_ANSWER_KIND else None,
        answer_kind=answer_kind,
        strip_calculator=strip_calculator,
    )


def write_examples(path: str | Path, examples: list[Example]) -> Path:
    """Write `examples` as a ReFT JSON array (the format `load_dataset` reads), atomically."""
    document = json.dumps([example.to_reft_json() for example in examples], indent=1)
    return write_text_atomic(path, document + "\n")
