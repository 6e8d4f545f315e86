"""The grader on the datasets' own gold annotations: every gold answer must be graded correct.

- SVAMP P-CoT (the ReFT authors' programs) executed through `reft grade --cot python`;
- SVAMP N-CoT with the paper's trigger appended, strict and lenient;
- GSM8K train: the raw answers ("#### N", lenient) and the paper's format (trigger appended, strict).

The data lives beside the checkout in ../shared/data; without it these tests skip, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reft import cli
from reft.answers.rewards import grade_completions
from reft.data.example import AnswerKind, CotKind
from reft.data.prompts import ANSWER_TRIGGER

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST_SAMPLE = 300
"""Programs run by the quick (not slow-marked) version of the SVAMP P-CoT check."""


def shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared datasets are not beside this checkout")
    return path


def grade_through_cli(tmp_path, monkeypatch, records, *options):
    """Run `reft grade` on (id, completion, answer) records; returns the output rows."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["grade"])
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with source.open("w") as file:
        for item_id, completion, answer in records:
            file.write(
                json.dumps({"id": item_id, "completion": completion, "answer": answer}) + "\n"
            )
    assert cli.main(["grade", "--input", str(source), "--output", str(target), *options]) == 0
    return [json.loads(line) for line in target.read_text().splitlines()]


def svamp_programs(limit: int | None = None):
    items = json.loads(shared("mwp_reft/svamp_python_sdp.json").read_text())[:limit]
    return [(item["item_id"], item["answer_cot"], item["answer_value"]) for item in items]


def assert_all_correct(rows, what):
    failures = [row for row in rows if not row["correct"]]
    rate = 1 - len(failures) / len(rows)
    print(f"{what}: {len(rows) - len(failures)}/{len(rows)} graded correct ({rate:.2%})")
    assert not failures, (
        f"{what}: {len(failures)} gold annotations not graded correct: {failures[:5]}"
    )


def test_svamp_gold_programs_sample(tmp_path, monkeypatch):
    rows = grade_through_cli(
        tmp_path, monkeypatch, svamp_programs(FAST_SAMPLE), "--task", "svamp", "--cot", "python"
    )
    assert_all_correct(rows, f"SVAMP P-CoT gold, first {FAST_SAMPLE}")


@pytest.mark.slow
def test_svamp_gold_programs_all(tmp_path, monkeypatch):
    records = svamp_programs()
    assert len(records) == 3043
    rows = grade_through_cli(tmp_path, monkeypatch, records, "--task", "svamp", "--cot", "python")
    assert [row["id"] for row in rows] == [item_id for item_id, _, _ in records]
    assert_all_correct(rows, "SVAMP P-CoT gold")


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_svamp_gold_nl(strict):
    items = json.loads(shared("mwp_reft/svamp_nl.json").read_text())
    completions = [
        item["answer_cot"].strip() + ANSWER_TRIGGER + item["answer_value"] for item in items
    ]
    golds = [item["answer_value"] for item in items]
    results = grade_completions(completions, golds, AnswerKind.numeric, CotKind.nl, strict=strict)
    rows = [
        {"id": item["item_id"], "correct": r.correct, "extracted": r.extracted}
        for item, r in zip(items, results, strict=True)
    ]
    assert len(rows) == 3076
    assert_all_correct(rows, f"SVAMP N-CoT gold ({'strict' if strict else 'lenient'})")


def gsm8k_train():
    lines = shared("gsm8k/train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_gsm8k_train_raw_answers_lenient(tmp_path, monkeypatch):
    """The raw GSM8K answer field, calculator marks and "#### N" included, through `reft grade`."""
    items = gsm8k_train()
    records = [
        (i, item["answer"], item["answer"].rsplit("####", 1)[1].strip())
        for i, item in enumerate(items)
    ]
    rows = grade_through_cli(tmp_path, monkeypatch, records, "--task", "gsm8k", "--cot", "nl")
    assert len(rows) == 7473
    assert_all_correct(rows, "GSM8K train gold, raw answers (lenient)")


def test_gsm8k_train_paper_format_strict():
    """The paper's N-CoT target: the reasoning, the trigger, the value without thousands commas."""
    completions, golds = [], []
    for item in gsm8k_train():
        cot, value = item["answer"].rsplit("\n####", 1)
        completions.append(cot.strip() + ANSWER_TRIGGER + value.strip().replace(",", ""))
        golds.append(value.strip())
    results = grade_completions(completions, golds, AnswerKind.numeric, CotKind.nl, strict=True)
    rows = [
        {"id": i, "correct": r.correct, "extracted": r.extracted} for i, r in enumerate(results)
    ]
    assert_all_correct(rows, "GSM8K train gold, paper format (strict)")
