"""Loaders: every shared dataset file, the GSM8K answer format, and every bad-input case."""

from __future__ import annotations

import json

import pytest

from reft.data.errors import DataError
from reft.data.example import AnswerKind, CotKind
from reft.data.loaders import detect_cot_kind, load_dataset, require_cot

# (file under ../shared/data, item count from its README, source, answer kind, gold CoT kind)
SHARED_FILES = [
    ("gsm8k/train.jsonl", 7473, "gsm8k", AnswerKind.numeric, CotKind.nl),
    ("gsm8k/test.jsonl", 1319, "gsm8k", AnswerKind.numeric, CotKind.nl),
    ("mwp_reft/svamp_nl.json", 3076, "svamp", AnswerKind.numeric, CotKind.nl),
    ("mwp_reft/svamp_python_sdp.json", 3043, "svamp", AnswerKind.numeric, CotKind.python),
    ("mwp_reft/gsm8k_test_set.json", 1319, "gsm8k", AnswerKind.numeric, None),
    ("mwp_reft/svamp_test_set.json", 1000, "svamp", AnswerKind.numeric, None),
    ("mwp_reft/mathqa_test_set.json", 1605, "mathqa", AnswerKind.multiple_choice, None),
    ("mwp_reft/mathqa-numeric_test_set.json", 1605, "mathqa-numeric", AnswerKind.numeric, None),
]


@pytest.mark.parametrize(("relative", "count", "source", "kind", "cot"), SHARED_FILES)
def test_shared_files_load_with_readme_counts(relative, count, source, kind, cot, shared_file):
    examples = load_dataset(shared_file(relative))
    assert len(examples) == count
    assert {e.source for e in examples} == {source}
    assert {e.answer_kind for e in examples} == {kind}
    assert detect_cot_kind(examples) is cot
    assert len({e.id for e in examples}) == count


def test_gsm8k_answer_is_split_at_the_mark_and_loses_commas(tmp_path):
    path = tmp_path / "gsm8k.jsonl"
    answer = (
        "Each is 2*500 = <<2*500=1000>>1000.\nSo 1,000 + 234 = <<1000+234=1234>>1234.\n#### 1,234"
    )
    path.write_text(json.dumps({"question": "Q?", "answer": answer}) + "\n")
    [example] = load_dataset(path)
    assert example.answer == "1234"
    assert (
        example.cot
        == "Each is 2*500 = <<2*500=1000>>1000.\nSo 1,000 + 234 = <<1000+234=1234>>1234."
    )
    [stripped] = load_dataset(path, strip_calculator=True)
    assert stripped.cot == "Each is 2*500 = 1000.\nSo 1,000 + 234 = 1234."


def test_gsm8k_real_file_first_item(shared_file):
    example = load_dataset(shared_file("gsm8k/train.jsonl"), strip_calculator=True)[0]
    assert example.answer == "72"
    assert example.cot.endswith("Natalia sold 48+24 = 72 clips altogether in April and May.")


def test_reft_format_keeps_answer_string_and_cot(shared_file):
    example = load_dataset(shared_file("mwp_reft/svamp_python_sdp.json"))[0]
    assert (example.id, example.answer) == ("svamp_0", "203.0")
    assert example.cot.startswith('def solution():\n    """tyler')


def test_mathqa_letters_are_normalised_to_lower_case(tmp_path):
    path = tmp_path / "mathqa_small.json"
    path.write_text(json.dumps([{"item_id": "mathqa_1", "question": "q", "answer_value": "C"}]))
    [example] = load_dataset(path)
    assert (example.answer, example.answer_kind) == ("c", AnswerKind.multiple_choice)


def test_unknown_file_infers_answer_kind(tmp_path):
    letters = tmp_path / "mine.json"
    letters.write_text(json.dumps([{"item_id": "x_1", "question": "q", "answer_value": "b"}]))
    assert load_dataset(letters)[0].answer_kind is AnswerKind.multiple_choice
    numbers = tmp_path / "other.jsonl"
    numbers.write_text(json.dumps({"item_id": "y_1", "question": "q", "answer_value": 3}) + "\n")
    [example] = load_dataset(numbers)
    assert (example.answer, example.answer_kind) == ("3", AnswerKind.numeric)


def _write_lines(path, *lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _error(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as caught:
        load_dataset(path, **kwargs)
    return caught.value


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = _write_lines(
        tmp_path / "svamp_bad.jsonl",
        json.dumps({"item_id": "svamp_1", "question": "q", "answer_value": "1"}),
        '{"item_id": "svamp_2", "question": ',
    )
    error = _error(path)
    assert (error.path, error.line) == (str(path), 2)
    assert "svamp_bad.jsonl:line 2: malformed JSON" in str(error)


def test_missing_field_names_line_and_field(tmp_path):
    path = _write_lines(
        tmp_path / "svamp_x.jsonl",
        json.dumps({"item_id": "svamp_1", "question": "q", "answer_value": "1"}),
        json.dumps({"item_id": "svamp_2", "answer_value": "2"}),
    )
    error = _error(path)
    assert (error.line, error.field) == (2, "question")
    assert "line 2: field 'question'" in str(error)


def test_missing_answer_names_the_answer_field(tmp_path):
    path = _write_lines(
        tmp_path / "svamp_y.jsonl", json.dumps({"item_id": "svamp_1", "question": "q"})
    )
    error = _error(path)
    assert (error.line, error.field) == (1, "answer_value")


def test_non_numeric_gold_for_numeric_task(tmp_path):
    path = _write_lines(
        tmp_path / "gsm8k_bad.jsonl",
        json.dumps({"item_id": "gsm8k_1", "question": "q", "answer_value": "12"}),
        json.dumps({"item_id": "gsm8k_2", "question": "q", "answer_value": "twelve"}),
    )
    error = _error(path)
    assert (error.line, error.field) == (2, "answer_value")
    assert "numeric answer expected, got 'twelve'" in str(error)


def test_bad_letter_for_multiple_choice(tmp_path):
    path = _write_lines(
        tmp_path / "mathqa_bad.jsonl",
        json.dumps({"item_id": "mathqa_1", "question": "q", "answer_value": "f"}),
    )
    assert "letter a-e" in str(_error(path))


def test_gsm8k_answer_without_mark(tmp_path):
    path = _write_lines(tmp_path / "g.jsonl", json.dumps({"question": "q", "answer": "no mark"}))
    error = _error(path)
    assert (error.line, error.field) == (1, "answer")


@pytest.mark.parametrize("content", ["", "   \n\n", "[]", "[\n]\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.json"
    path.write_text(content)
    assert "empty" in str(_error(path))


def test_json_array_errors_report_the_line_of_the_record(tmp_path):
    records = [
        {"item_id": "svamp_1", "question": "q", "answer_value": "1"},
        {"item_id": "svamp_2", "question": "q", "answer_value": "x"},
    ]
    path = tmp_path / "svamp_arr.json"
    path.write_text(json.dumps(records, indent=2))  # the second record starts on line 7
    error = _error(path)
    assert (error.line, error.field) == (7, "answer_value")


def test_truncated_json_array(tmp_path):
    path = tmp_path / "svamp_cut.json"
    path.write_text('[\n {"item_id": "svamp_1", "question": "q", "answer_value": "1"},\n {"item_')
    assert _error(path).line == 3


def test_record_that_is_not_an_object(tmp_path):
    path = _write_lines(tmp_path / "x.jsonl", "[1, 2]")
    assert "expected a JSON object" in str(_error(path))


def test_wrong_field_type(tmp_path):
    path = _write_lines(
        tmp_path / "x.jsonl", json.dumps({"item_id": 3, "question": "q", "answer_value": "1"})
    )
    error = _error(path)
    assert (error.field, error.line) == ("item_id", 1)


def test_duplicate_ids(tmp_path):
    row = json.dumps({"item_id": "svamp_1", "question": "q", "answer_value": "1"})
    path = _write_lines(tmp_path / "svamp_dup.jsonl", row, row)
    error = _error(path)
    assert (error.line, error.field) == (2, "item_id")
    assert "first seen on line 1" in str(error)


def test_missing_file_and_bad_specs(tmp_path):
    assert "no such file" in str(_error(tmp_path / "absent.json"))
    assert "synth:SPLIT" in str(_error("synth:validation"))
    assert "N must be an integer" in str(_error("synth:dev:many"))


def test_synth_spec_generates_in_memory():
    examples = load_dataset("synth:dev:25")
    assert len(examples) == 25
    assert {e.source for e in examples} == {"synth"}
    assert detect_cot_kind(examples) is CotKind.nl


def test_require_cot_rejects_missing_or_other_kind(shared_file):
    test_set = load_dataset(shared_file("mwp_reft/svamp_test_set.json"))
    with pytest.raises(DataError, match="no gold chain of thought"):
        require_cot(test_set, CotKind.nl, "svamp_test_set.json")
    programs = load_dataset(shared_file("mwp_reft/svamp_python_sdp.json"))
    with pytest.raises(DataError, match="are python, but cot=nl"):
        require_cot(programs, CotKind.nl, "svamp_python_sdp.json")
    require_cot(programs, CotKind.python, "svamp_python_sdp.json")


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_utf8_byte_order_mark_is_skipped(tmp_path, suffix):
    records = [{"item_id": f"svamp_{i}", "question": "q", "answer_value": str(i)} for i in (1, 2)]
    text = json.dumps(records) if suffix == ".json" else "\n".join(map(json.dumps, records))
    path = tmp_path / f"svamp_bom{suffix}"
    path.write_text(text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert [e.id for e in load_dataset(path)] == ["svamp_1", "svamp_2"]
