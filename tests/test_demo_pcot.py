"""`reft demo --quick --cot python`: the P-CoT half of the demo runs end to end, with programs as the
chain of thought and the sandboxed executor as the reward (not a test of the accuracy gap). In its
own file so the suite's workers run it beside the N-CoT quick demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reft.data.synthetic import computes_in_python
from reft.demo.stages import METHODS


@pytest.mark.slow
def test_quick_pcot_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "reft", "demo", "--quick", "--cot", "python", "--out",
               str(out), f"base_cache={tmp_path / 'bases'}"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert config["cot"] == "python" and config["task"]["distractor_prob"] > 0, "python.yaml"
    assert config["task"]["literal_prob"] == 0.5, "python.yaml's hand-worked programs"
    assert config["task"]["train_size"] == 300, "quick.yaml on top"
    assert set(results["methods"]) == {"warmup", *METHODS}
    # The gold programs are what every stage trains on, and the base learnt programs too.
    train = json.loads((out / "data" / "train.json").read_text())
    assert all(row["answer_cot"].startswith("def solution():") for row in train)
    computing = sum(computes_in_python(row["answer_cot"]) for row in train)
    assert 0.3 < computing / len(train) < 0.7, "half of the gold programs are worked by hand"
    # ReFT's reward came from running its programs: the executor's speed and error kinds per step.
    steps = [json.loads(line) for line in (out / "seed_0" / "reft" / "metrics.jsonl").open()]
    steps = [row for row in steps if row.get("split") == "train"]
    assert steps and all(row["programs_per_s"] > 0 and "error_forbidden" in row for row in steps)
    assert results["budgets"]["0"]["reft"]["programs_per_s"] > 0
    report = (out / "report.md").read_text()
    assert "## Program errors" in report and "Programs/s" in report
    test_eval = json.loads((out / "seed_0" / "eval" / "reft" / "results.json").read_text())
    assert "top1_error_exception" in test_eval["metrics"]
