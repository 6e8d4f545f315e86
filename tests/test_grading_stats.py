"""Error shares and program throughput (reft.answers.grading_stats): by hand, from real sandbox
runs, and as the ReFT trainer logs them."""

from __future__ import annotations

import pytest

from reft.answers.execute import ErrorKind, ProgramPool, SandboxConfig
from reft.answers.grading_stats import ERROR_KINDS, error_shares, programs_per_second
from reft.answers.rewards import NO_ANSWER, GradeResult, grade_completions
from reft.data.example import AnswerKind, CotKind

PYTHON_KINDS = ("timeout", "memory", "exception", "no_result", "crashed", "forbidden")


def _failed(error: str) -> GradeResult:
    return GradeResult(None, False, 0.0, error)


def test_every_execution_error_kind_and_no_answer_have_a_share():
    assert ERROR_KINDS[CotKind.python] == tuple(kind.value for kind in ErrorKind) == PYTHON_KINDS
    assert ERROR_KINDS[CotKind.nl] == (NO_ANSWER,)


def test_python_shares_count_each_kind_over_all_responses():
    """10 responses: 2 right, 1 wrong but answered, then one of each kind plus a second timeout."""
    grades = [GradeResult("7", True, 1.0, None)] * 2 + [GradeResult("8", False, 0.1, None)]
    grades += [_failed(kind) for kind in PYTHON_KINDS] + [_failed("timeout")]
    shares = error_shares([g.error for g in grades], CotKind.python)
    assert list(shares) == [f"error_{kind}" for kind in PYTHON_KINDS]
    assert shares == pytest.approx({"error_timeout": 0.2, "error_memory": 0.1,
                                    "error_exception": 0.1, "error_no_result": 0.1,
                                    "error_crashed": 0.1, "error_forbidden": 0.1})  # fmt: skip
    assert sum(shares.values()) == pytest.approx(0.7), "plus the 3 error-free responses"


def test_absent_kinds_are_zero_so_every_curve_is_continuous():
    assert error_shares([None, None], CotKind.python) == {f"error_{k}": 0.0 for k in PYTHON_KINDS}
    assert error_shares([], CotKind.python) == {f"error_{k}": 0.0 for k in PYTHON_KINDS}
    assert error_shares([], CotKind.nl) == {"error_no_answer": 0.0}


def test_nl_shares_count_responses_without_an_answer():
    grades = [GradeResult("7", True, 1.0, None), _failed(NO_ANSWER), _failed(NO_ANSWER),
              GradeResult("3", False, 0.1, None)]  # fmt: skip
    assert error_shares([g.error for g in grades], CotKind.nl) == {"error_no_answer": 0.5}


@pytest.mark.parametrize(
    ("errors", "cot", "reason"),
    [
        (["timeout"], CotKind.nl, "an execution error in an N-CoT batch"),
        ([NO_ANSWER], CotKind.python, "N-CoT's no_answer in a P-CoT batch"),
        (["segfault"], CotKind.python, "a kind the list does not know: never dropped silently"),
    ],
)
def test_a_kind_the_cot_cannot_give_is_refused(errors, cot, reason):
    with pytest.raises(ValueError, match="not among"):
        error_shares(errors, cot)


def test_programs_per_second():
    assert programs_per_second(64, 2.0) == 32.0
    assert programs_per_second(64, 0.0) == 0.0, "nothing measured: no rate, no division by zero"


PROBES = {
    "def solution():\n    return 7": None,
    "def solution():\n    while True:\n        pass": "timeout",
    "def solution():\n    return 1 / 0": "exception",
    "def solution():\n    return None": "no_result",
    "def solution():\n    return open('/etc/passwd').read()": "forbidden",
    "def solution():\n    import os\n    os.system('true')\n    return 7": "forbidden",
}
"""Programs a policy might write, and the error each must be counted under."""


def test_shares_of_real_sandbox_runs():
    with ProgramPool(workers=1, config=SandboxConfig(timeout_s=0.5)) as pool:
        grades = grade_completions(list(PROBES), ["7"] * len(PROBES), AnswerKind.numeric,
                                   CotKind.python, executor=pool, timeout_s=0.5)  # fmt: skip
    assert [g.error for g in grades] == list(PROBES.values())
    shares = error_shares([g.error for g in grades], CotKind.python)
    assert shares["error_forbidden"] == pytest.approx(2 / 6)
    assert shares["error_timeout"] == shares["error_exception"] == pytest.approx(1 / 6)
    assert shares["error_memory"] == shares["error_crashed"] == 0.0


def test_top1_error_shares_count_the_first_completion_of_each_question():
    from reft.evaluate.predict import GradedCompletion, QuestionResult, top1_error_shares

    def completion(error: str | None) -> GradedCompletion:
        return GradedCompletion("...", None if error else "7", False, 0.0, error, 5, True)

    results = [QuestionResult("a", "q", "7", [completion("forbidden"), completion(None)]),
               QuestionResult("b", "q", "7", [completion(None), completion("timeout")])]  # fmt: skip
    shares = top1_error_shares(results, CotKind.python)
    assert shares["error_forbidden"] == 0.5 and shares["error_timeout"] == 0.0


def test_eval_table_leaves_out_error_shares():
    from reft.evaluate.report import results_table

    metrics = {"questions": 4, "top1": 0.5, "answered": 0.75, "top1_error_timeout": 0.25}
    header = results_table({"reft": {"metrics": metrics}}).splitlines()[0]
    assert header == "| run | questions | top1 |"


# ---- as the trainers log them, on an untrained policy ----------------------------------------


@pytest.fixture(scope="module")
def start(tmp_path_factory, digit_game_start):
    return digit_game_start(tmp_path_factory.mktemp("grading"), 24)


@pytest.mark.slow
@pytest.mark.parametrize("cot", ["python", "nl"])
def test_ppo_logs_grading_time_and_error_shares_per_step_and_dev(start, tmp_path, cot):
    from reft.cli import main
    from reft.metrics import read_metrics

    out = tmp_path / cot
    assert main(["train", f"model={start['model']}", f"train_data={start['data']}", f"cot={cot}",
                 "dev_holdout=4", "eval_every=2", "batch_size=4", "mini_batch_size=4",
                 "micro_batch_size=4", "max_new_tokens=8", "eval_max_new_tokens=8", "max_steps=2",
                 "log_every=1", "timeout_s=1", f"out_dir={out}"]) == 0  # fmt: skip
    kinds = [f"error_{kind}" for kind in ERROR_KINDS[CotKind(cot)]]
    for record in read_metrics(out, "train"):
        assert set(kinds) <= set(record) and 0 < record["time_grade"] <= record["time_scoring"]
        assert sum(record[k] for k in kinds) == pytest.approx(1 - record["reward"] / 0.1), (
            "an untrained policy never answers right: each response fails or earns the partial"
        )
        assert ("programs_per_s" in record) == (cot == "python")
        assert "hacked_reward_rate" not in record, "numeric answers: no hacking metrics"
    [dev] = read_metrics(out, "dev")
    assert set(kinds) <= set(dev)


@pytest.mark.slow
def test_online_self_training_logs_them_too(start, tmp_path):
    """P-CoT gold programs, so that online self-training (which trains on them) runs with cot=python."""
    import json

    from reft.cli import main
    from reft.metrics import read_metrics

    games = [{"item_id": f"pick_{i}", "question": f"Pick a digit for game {i}.",
              "answer_cot": f"def solution():\n    return {i % 10}", "answer_value": str(i % 10)}
             for i in range(24)]  # fmt: skip
    (tmp_path / "games.json").write_text(json.dumps(games))
    out = tmp_path / "online"
    assert main(["self-train", "--mode", "online", f"model={start['model']}", "cot=python",
                 f"train_data={tmp_path / 'games.json'}", "dev_holdout=4", "eval_every=2",
                 "batch_size=4", "micro_batch_size=4", "max_new_tokens=8", "eval_max_new_tokens=8",
                 "max_steps=2", "log_every=1", "timeout_s=1", f"out_dir={out}"]) == 0  # fmt: skip
    kinds = [f"error_{kind}" for kind in ERROR_KINDS[CotKind.python]]
    for record in read_metrics(out, "train"):
        assert set(kinds) <= set(record) and 0 < record["time_grade"] <= record["time_rollout"]
        assert sum(record[k] for k in kinds) == pytest.approx(1 - record["reward"] / 0.1)
        assert record["programs_per_s"] > 0
    [dev] = read_metrics(out, "dev")
    assert set(kinds) <= set(dev)
