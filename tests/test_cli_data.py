"""`reft data` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys

from reft.cli import main
from reft.data.loaders import load_dataset


def test_synth_writes_reft_json_and_its_knobs(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["data", "synth", "--n", "12", "--split", "train", "--seed", "4", "--cot", "python",
                 "--out", str(out), "max_steps=2"]) == 0  # fmt: skip
    records = json.loads(out.read_text())
    assert len(records) == 12
    assert set(records[0]) == {"item_id", "question", "answer_cot", "answer_value"}
    assert records[0]["answer_cot"].startswith("def solution():")
    knobs = (tmp_path / "train.config.yaml").read_text()
    assert "seed: 4" in knobs and "max_steps: 2" in knobs
    examples = load_dataset(out)
    assert {e.source for e in examples} == {"synth"}
    assert "wrote 12 train problems" in capsys.readouterr().out


def test_synth_choices_writes_option_letters_and_refuses_pcot(tmp_path, capsys):
    out = tmp_path / "synth_train.json"
    assert main(["data", "synth", "--n", "8", "--split", "train", "--out", str(out),
                 "choices=4"]) == 0  # fmt: skip
    records = json.loads(out.read_text())
    assert {r["answer_value"] for r in records} <= set("abcd")
    assert all("\na ) " in r["question"] and " , d ) " in r["question"] for r in records)
    assert {e.answer_kind.value for e in load_dataset(out)} == {"multiple_choice"}
    assert "choices: 4" in (tmp_path / "synth_train.config.yaml").read_text()
    assert main(["data", "synth", "--n", "8", "--split", "train", "--cot", "python",
                 "--out", str(tmp_path / "p.json"), "choices=4"]) == 2  # fmt: skip
    assert "needs cot=nl" in capsys.readouterr().err


def test_stats_prints_counts_lengths_and_an_example(tmp_path, capsys, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    assert (
        main(["data", "stats", "--dataset", "synth:dev:40", "--tokenizer", str(tmp_path / "tok")])
        == 0
    )
    out = capsys.readouterr().out
    assert "items        40" in out
    assert "answer kinds {'numeric': 40}" in out
    assert "target tokens  min" in out and "(EOS included)" in out
    assert "Question:\n" in out and "Therefore, the answer is: " in out


def test_stats_on_shared_python_file_renders_the_program_header(capsys, shared_file):
    path = shared_file("mwp_reft/svamp_python_sdp.json")
    assert main(["data", "stats", "--dataset", str(path)]) == 0
    out = capsys.readouterr().out
    assert "items        3043" in out and "kind: python" in out
    assert 'Answer reasoning:\ndef solution():\n    """' in out


def test_bad_override_and_bad_file_exit_2_with_a_message(tmp_path, capsys):
    assert main(["data", "synth", "--n", "1", "--split", "dev", "--out", str(tmp_path / "x.json"),
                 "max_stepz=2"]) == 2  # fmt: skip
    assert "unknown key 'max_stepz'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"item_id": "svamp_1", "question": "q"}\n')
    assert main(["data", "stats", "--dataset", str(bad)]) == 2
    assert "bad.jsonl:line 1: field 'answer_value': missing the answer" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_console_script_runs():
    completed = subprocess.run(
        [sys.executable, "-m", "reft", "data", "synth", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "--distractor-prob" in completed.stdout and "Probability of inserting" in completed.stdout
    )
    assert "--choices" in completed.stdout and "Multiple-choice form" in completed.stdout
