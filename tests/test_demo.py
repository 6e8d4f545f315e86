"""`reft demo`: the stage graph, the runner, the report arithmetic, and (slow) the quick demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reft.config import load_config
from reft.demo.config import DemoConfig
from reft.demo.report import aggregate, results_table
from reft.demo.runner import StageFailed, StageRunner, done_marker
from reft.demo.stages import METHODS, Stage, plan_stages


def demo_config(quick: bool = True, overrides: tuple[str, ...] = ()) -> DemoConfig:
    return load_config(DemoConfig, DemoConfig(quick=quick).recipe_files(), list(overrides))


def test_seed_list_parses_and_rejects():
    assert DemoConfig(seeds="0,1,2").seed_list() == [0, 1, 2]
    assert DemoConfig(seeds="7").seed_list() == [7]
    for bad in ("a,b", "1,1", ""):
        with pytest.raises(ValueError, match="seeds"):
            DemoConfig(seeds=bad).seed_list()


def test_stage_graph_wiring(tmp_path):
    config = demo_config(overrides=("reft.lr=0.5", "common.dev_limit=7"))
    stages = {s.name: s for s in plan_stages(config, 3, tmp_path / "seed_3", tmp_path / "data")}
    evaluated = ("warmup", *METHODS)
    assert set(stages) == {"warmup", *METHODS, *(f"reward_model_{m}" for m in METHODS),
                           *(f"{kind}_{m}" for kind in ("eval", "evaltrain", "evalshift")
                             for m in evaluated)}  # fmt: skip
    assert stages["warmup"].settings["model"] == config.model  # no base given: the model itself
    based = plan_stages(config, 3, tmp_path / "seed_3", tmp_path / "data", start="base/final")
    assert based[0].name == "warmup" and based[0].settings["model"] == "base/final"
    warmup = str(tmp_path / "seed_3" / "warmup" / "final")
    for method in METHODS:  # every method starts from the warm-up's last checkpoint
        assert stages[method].settings["model"] == warmup
        assert stages[method].needs == ("warmup",)
        assert stages[method].settings["seed"] == 3
        assert stages[method].settings["dev_limit"] == 7  # common reaches every training stage
        assert stages[method].settings["dev_data"].endswith("dev.json")
        evaluation = stages[f"eval_{method}"]
        assert evaluation.settings["model"].endswith(f"{method}/best")  # best DEV checkpoint
        assert evaluation.settings["dataset"].endswith("test.json")
        curve = method in config.curve_methods  # the accuracy-against-K figure's methods
        assert evaluation.settings["k"] == (config.curve_k if curve else config.k)
        assert set(evaluation.needs) == {method, f"reward_model_{method}"}
        assert evaluation.settings["rerank"].endswith(f"reward_model_{method}/best")
        # The authors' protocol: each reward model starts from the method's evaluated model and
        # trains on the warm-up's samples, drawn once (by the first) and shared.
        reward_model = stages[f"reward_model_{method}"]
        assert reward_model.settings["model"] == evaluation.settings["model"]
        assert method in reward_model.needs
    assert set(config.curve_methods) == {"sft", "reft"} and config.curve_k > config.k
    assert stages["reft"].settings["lr"] == 0.5
    assert "lr=0.5" in stages["reft"].argv
    assert stages["reft"].argv[0] == "train"
    assert stages["offline_self_training"].settings["mode"] == "offline"
    assert stages["online_self_training"].settings["mode"] == "online"
    assert stages["reward_model_sft"].settings["sample_model"] == warmup
    for method in METHODS[1:]:
        shared = stages[f"reward_model_{method}"]
        assert shared.settings["records_from"] == str(stages["reward_model_sft"].out_dir)
        assert "reward_model_sft" in shared.needs
    assert "k" not in stages["eval_warmup"].settings
    for stage in stages.values():  # no stage ever trains on or selects with the test split
        if stage.trains:
            used = {Path(stage.settings["train_data"]).name, Path(stage.settings["dev_data"]).name}
            assert used == {"train.json", "dev.json"}


def test_every_stage_command_parses_as_its_reft_command(tmp_path):
    """The recipe's sections are valid settings of the commands they are handed to."""
    from reft.cli import build_parser
    from reft.config import config_from_args

    config = demo_config(quick=False)
    for stage in plan_stages(config, 0, tmp_path / "seed_0", tmp_path / "data"):
        args = build_parser().parse_args(stage.argv)
        schema = {"sft": "SFTConfig", "train": "PPOConfig", "self-train": "SelfTrainConfig",
                  "rm": "RewardModelConfig", "eval": "EvalConfig"}[stage.argv[0]]  # fmt: skip
        module = "reft.evaluate.config" if schema == "EvalConfig" else "reft.train.config"
        resolved = config_from_args(getattr(__import__(module, fromlist=[schema]), schema), args)
        assert resolved.out_dir == str(stage.out_dir)


@pytest.mark.parametrize("quick", [False, True])
def test_recipe_reft_stage_fuses_its_first_forward_and_moves_the_policy(tmp_path, quick):
    """The shipped ReFT settings take the fused rollout forward on one process, and the critic-only
    steps leave policy steps inside the step budget (else --quick would never move the policy)."""
    from reft.cli import build_parser
    from reft.config import config_from_args
    from reft.train.config import PPOConfig
    from reft.train.ppo import fuses_first_forward

    stages = {s.name: s for s in plan_stages(demo_config(quick), 0, tmp_path / "s", tmp_path / "d")}
    ppo = config_from_args(PPOConfig, build_parser().parse_args(stages["reft"].argv))
    assert fuses_first_forward(ppo, num_processes=1)
    assert ppo.critic_warmup_steps < ppo.max_steps


def test_progress_reads_only_the_latest_run_of_a_resumed_stage(tmp_path):
    from reft.demo.runner import _last_progress

    log = tmp_path / "reft.log"
    log.write_text("$ reft train a=1\nreft:  40%|####| 40/100 [01:00<01:30, 1.5s/it]\r"
                   "reft:  41%|####| 41/100 [01:02<01:29, 1.5s/it]\n")  # fmt: skip
    assert _last_progress(log) == (41, 100, "01:02", "01:29")
    with log.open("a") as handle:  # the resumed run has not printed a bar yet
        handle.write("$ reft train a=1 resume=true\nloading\n")
    assert _last_progress(log) is None
    with log.open("a") as handle:
        handle.write("reft:  42%|####| 42/100 [00:02<01:40, 1.7s/it]")
    assert _last_progress(log) == (42, 100, "00:02", "01:40")


def _synth_stage(tmp_path: Path, name: str, needs: tuple[str, ...] = (), n: str = "3") -> Stage:
    out = tmp_path / name
    return Stage(name, ["data", "synth", "--n", n, "--split", "dev", "--out", str(out / "d.json")],
                 out, needs, trains=False)  # fmt: skip


def test_runner_respects_dependencies_and_skips_finished_stages(tmp_path, capsys):
    stages = [_synth_stage(tmp_path, "b", ("a",)), _synth_stage(tmp_path, "a")]
    records = StageRunner(stages, tmp_path / "logs", workers=2).run()
    assert records["b"].started >= records["a"].started + records["a"].seconds - 1e-6
    assert all(done_marker(stage).exists() for stage in stages)
    assert json.loads((tmp_path / "a" / "d.json").read_text())[0]["item_id"]
    (tmp_path / "a" / "d.json").unlink()
    StageRunner(stages, tmp_path / "logs", workers=2).run()  # both done: nothing runs again
    assert not (tmp_path / "a" / "d.json").exists()


def test_runner_reports_a_failing_stage_with_its_log(tmp_path):
    stages = [
        _synth_stage(tmp_path, "bad", n="not-a-number"),
        _synth_stage(tmp_path, "after", ("bad",)),
    ]
    with pytest.raises(StageFailed, match=r"stage bad failed \(exit 2\)") as error:
        StageRunner(stages, tmp_path / "logs", workers=1).run()
    assert "invalid int value" in str(error.value)  # the end of the stage's own log
    assert not done_marker(stages[0]).exists() and not (tmp_path / "after").exists()


def test_aggregate_mean_and_sample_std():
    per_seed = {0: {"sft": {"top1": 0.2}}, 1: {"sft": {"top1": 0.4}}, 2: {"sft": {"top1": 0.6}}}
    means, stds = aggregate(per_seed)
    assert means["sft"]["top1"] == pytest.approx(0.4)
    assert stds["sft"]["top1"] == pytest.approx(0.2)  # sqrt(((-.2)^2 + 0 + .2^2) / 2)


def test_results_table_rows_and_columns():
    row = {"top1": 0.5, "voting": 0.55, "rerank": 0.6, "pass": 0.7}
    zero = {"top1": 0.0, "voting": 0.0, "rerank": 0.0, "pass": 0.0}
    results = {
        "k": 8, "seeds": [0, 1],
        "methods": {"warmup": {"top1": 0.1}, **{m: row for m in METHODS}},
        "std": {"warmup": {"top1": 0.01}, **{m: zero for m in METHODS}},
        "budget_seconds": {m: 60.0 for m in ("warmup", *METHODS)},
    }  # fmt: skip
    table = results_table(results).splitlines()
    assert table[0].startswith("| Method | Top-1 | Voting@8 | Rerank@8 |")
    assert table[2] == "| SFT warm-up | 10.0 ± 1.0 | – | – | – | 60 |"
    assert table[4] == "| ReFT | 50.0 ± 0.0 | 55.0 ± 0.0 | 60.0 ± 0.0 | 70.0 ± 0.0 | 60 |"


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    """`reft demo --quick` runs every stage and writes the artefacts (not a test of the accuracy gap)."""
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "reft", "demo", "--quick", "--out", str(out),
         f"base_cache={tmp_path / 'bases'}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "synth" and results["seed"] == 0
    assert set(results["methods"]) == {"warmup", *METHODS}
    for method in METHODS:
        assert set(results["methods"][method]) == {"top1", "voting", "rerank", "pass"}
    for row in results["methods"].values():
        assert all(0.0 <= value <= 1.0 for value in row.values())
    assert set(results["budget_seconds"]) == {"warmup", *METHODS}
    assert results["config"]["quick"] is True
    report = (out / "report.md").read_text()
    assert "| ReFT |" in report and "Voting@2" in report
    for figure in ("dev_accuracy.png", "accuracy.png", "accuracy_vs_k.png", "reft_training.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({figure})" in report
    assert "| ReFT |" in run.stdout  # the table is printed at the end
    commands = (out / "seed_0" / "commands.sh").read_text()
    assert commands.count("\nreft ") == 4 + 24  # the base's corpora and stage, then the seed's
    # SFT and ReFT drew curve_k samples: the figure's curves reach it, the table reads k from them.
    assert {"sft", "reft"} <= set(results["k_curves"])
    assert results["k_curves"]["reft"]["k"][-1] == results["config"]["curve_k"]
    assert set(results["generalisation"]["reft"]) >= {"train", "test", "shifted"}
    base = json.loads((out / "base.json").read_text())
    assert base["cached"] is False and Path(base["start"]).is_dir()
    again = subprocess.run(  # a second demo elsewhere reuses the cached base
        [sys.executable, "-m", "reft", "demo", "--quick", "--out", str(tmp_path / "again"),
         f"base_cache={tmp_path / 'bases'}", "seeds=5", "task.train_size=100"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "base.json").read_text())["cached"] is True
