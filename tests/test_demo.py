"""`reft demo`: the stage graph, the runner, the report arithmetic, and (slow) the quick demo end to end."""

from __future__ import annotations

import io
import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from reft.checkpoint import Checkpointer
from reft.config import load_config
from reft.demo import runner
from reft.demo.config import DemoConfig
from reft.demo.report import aggregate, results_table
from reft.demo.run import resume_command
from reft.demo.runner import StageFailed, StageRunner, _last_progress, _seconds, done_marker
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


# A training stage's log as written (reft.log of a quick demo): transformers' bars, the stage's
# own, then a dev evaluation's and a checkpoint's, nested under it (ESC[A moves back up).
_TRAINING_LOG = (
    "$ reft train out_dir=x\n\rLoading weights:   0%|          | 0/20 [00:00<?, ?it/s]"
    "\rLoading weights: 100%|##########| 20/20 [00:00<00:00, 2511.56it/s]\n"
    "\rreft:   0%|          | 0/4 [00:00<?, ?it/s]"
    "\rreft:  50%|#####     | 2/4 [00:01<00:01,  1.50it/s, reward=0, kl=0, lr=0.0001]\n"
    "\rreft dev:   0%|          | 0/40 [00:00<?, ?it/s]\x1b[A\n"
    "\rreft dev: 100%|##########| 40/40 [00:00<00:00, 125.94it/s]\x1b[A\n\r          \x1b[A"
    "15:10:16 INFO reft.train.loop: reft step 2 dev: accuracy=0, answered=0\n\n"
    "\rWriting model shards:   0%|          | 0/1 [00:00<?, ?it/s]\x1b[A"
    "\rWriting model shards: 100%|##########| 1/1 [00:00<00:00, 265.28it/s]\n"
)


@pytest.mark.parametrize(
    "text, expected",
    [
        (_TRAINING_LOG, (2, 4, "00:01", "00:01")),
        (_TRAINING_LOG.split("\rreft:")[0], None),  # only the weights loaded so far
        # The phases of stages that have no training bar yet, or none at all, are their progress.
        ("$ reft rm train\n\rrm dev sampling:  25%|##| 10/40 [00:02<00:06,  5.0it/s]",
         (10, 40, "00:02", "00:06")),
        ("$ reft eval\n\rLoading weights: 100%|#| 20/20 [00:00<00:00]\n"
         "\rgreedy:  50%|#####| 30/60 [00:01<00:01, 30.0it/s]", (30, 60, "00:01", "00:01")),
        ("$ reft eval\n\r4 samples:  10%|#| 6/60 [00:01<00:09,  6.0it/s]",
         (6, 60, "00:01", "00:09")),
        # A bar with no description.
        ("$ reft sft\n\r 10%|#| 6/60 [00:01<00:09,  6.0it/s]", (6, 60, "00:01", "00:09")),
    ],
)  # fmt: skip
def test_progress_is_the_stages_own_bar_not_an_evaluation_or_weight_file(tmp_path, text, expected):
    log = tmp_path / "stage.log"
    log.write_text(text)
    assert _last_progress(log) == expected


def test_progress_skips_a_bar_cut_by_the_start_of_the_read_tail(tmp_path):
    log = tmp_path / "stage.log"
    cut = "\rLoading weights: 100%|##########| 20/20 [00:00<00:00, 2511.56it/s]\n"
    log.write_text("x" * (runner._LOG_TAIL_BYTES - len(cut) + 6) + cut)  # read from "ng weights"
    assert _last_progress(log) is None


def test_training_bar_eta_leaves_out_the_dev_evaluation(monkeypatch):
    """The bar's ETA (read by the demo's progress line) after a long dev evaluation still follows
    the step rate: the loop restarts the bar's timer after evaluating and saving, else tqdm's
    smoothed rate takes the evaluation for a slow step (an ETA of 29:52 with 1:30 left)."""
    import tqdm.std

    from reft.train.interrupt import InterruptRequest
    from reft.train.loop import RunState, TrainingRun

    now = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])  # the bar's clock

    def step_fn(step: int) -> dict[str, float]:  # one second a step
        now[0] += 1.0
        return {}

    def evaluate(eval_fn) -> dict[str, float]:  # a 15-minute dev evaluation every 5 steps
        now[0] += 900.0
        return {"accuracy": 0.5}

    config = SimpleNamespace(eval_every=5, save_every=0, log_every=100, max_seconds=0, patience=0)
    run = SimpleNamespace(config=config, state=RunState(), steps_per_epoch=5, stop_step=lambda: 20,
                          device=torch.device("cpu"),
                          scheduler=SimpleNamespace(get_last_lr=lambda: [1e-3]),
                          metrics=SimpleNamespace(log=lambda *args: None), evaluate=evaluate,
                          save=lambda dev: None, _interrupted=lambda interrupt: False)  # fmt: skip
    out = io.StringIO()
    TrainingRun._loop(run, step_fn, None, tqdm.std.tqdm(total=20, file=out), InterruptRequest())
    etas = dict(re.findall(r"(\d+)/20 \[[\d:]+<([\d:]+)", out.getvalue()))
    for step in (6, 7, 11, 16):  # the steps right after an evaluation
        assert _seconds(etas[str(step)]) <= 20 - step + 1, (step, etas[str(step)])


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


class FakeStage:
    """A running stage as the runner sees it (reft.demo.launch.StageProcess), with no process.

    `exits` maps a signal to (polls until the stage then exits, its exit status); other signals
    are ignored, but SIGKILL. `presses` maps a poll of this stage to a signal the user sends the
    runner during it (SIGINT: a Ctrl-C)."""

    pid = 0

    def __init__(self, exits: dict[int, tuple[int, int]], presses: dict[int, int] | None = None,
                 status: int | None = None) -> None:  # fmt: skip
        self.exits, self.presses = exits, presses or {}
        self.returncode = status
        self.signals: list[int] = []
        self.polls = 0
        self._exit: list[int] | None = None  # [polls left, exit status]

    def poll(self) -> int | None:
        self.polls += 1
        if self.polls in self.presses:
            signal.raise_signal(self.presses[self.polls])  # its handler raises right here
        if self._exit is not None and self.returncode is None:
            self._exit[0] -= 1
            self.returncode = self._exit[1] if self._exit[0] <= 0 else None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL and self.returncode is None:
            self.returncode = -signal.SIGKILL
        elif signum in self.exits:  # the sooner exit wins
            polls, status = self.exits[signum]
            if self._exit is None or polls < self._exit[0]:
                self._exit = [polls, status]

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        return self.returncode


def _fake_run(
    tmp_path: Path, monkeypatch, fakes: dict[str, FakeStage]
) -> tuple[BaseException, str]:
    """Run `fakes` as training stages, all at once, until the runner raises; returns what it
    raised and printed. No stage may be marked done."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler in this test process")
    for name in ("POLL_SECONDS", "STOP_POLL_SECONDS"):
        monkeypatch.setattr(runner, name, 0.001)
    monkeypatch.setattr(runner, "launch_stage", lambda argv, log, threads: fakes[argv[0]])
    stages = [Stage(name, [name], tmp_path / name) for name in fakes]
    stream = io.StringIO()
    with pytest.raises(BaseException) as raised:
        StageRunner(stages, tmp_path / "logs", workers=len(fakes), stream=stream).run()
    assert not any(done_marker(stage).exists() for stage in stages)
    return raised.value, stream.getvalue()


INTERRUPTED = 130
"""A training stage's exit status after it checkpointed for a Ctrl-C (reft.cli)."""


def test_ctrl_c_forwards_one_sigint_then_waits_for_the_stages_to_checkpoint(tmp_path, monkeypatch):
    fakes = {
        "a": FakeStage({signal.SIGINT: (1, INTERRUPTED)}, presses={1: signal.SIGINT}),
        "b": FakeStage({signal.SIGINT: (5, INTERRUPTED)}),  # a longer step and save
    }
    raised, printed = _fake_run(tmp_path, monkeypatch, fakes)
    assert isinstance(raised, KeyboardInterrupt)  # reft demo exits 130 (reft.cli)
    assert fakes["a"].signals == fakes["b"].signals == [signal.SIGINT]
    assert fakes["b"].polls >= 5  # waited for, not terminated
    assert "interrupted: waiting up to 120 s for a, b to write a checkpoint" in printed
    assert f"a: stopped (exit {INTERRUPTED})" in printed
    assert f"b: stopped (exit {INTERRUPTED})" in printed


def test_second_ctrl_c_stops_the_stages_at_once(tmp_path, monkeypatch):
    # The stage would take far longer than the test to checkpoint; the user presses Ctrl-C again.
    fakes = {"a": FakeStage({signal.SIGINT: (10**9, INTERRUPTED), signal.SIGTERM: (1, -15)},
                            presses={1: signal.SIGINT, 3: signal.SIGINT})}  # fmt: skip
    raised, printed = _fake_run(tmp_path, monkeypatch, fakes)
    assert isinstance(raised, KeyboardInterrupt)
    assert fakes["a"].signals == [signal.SIGINT, signal.SIGTERM]
    assert "stopping a at once" in printed and "a: stopped (exit -15)" in printed


def test_stage_that_does_not_stop_is_terminated_then_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "INTERRUPT_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(runner, "TERMINATE_WAIT_SECONDS", 0.05)
    fakes = {"a": FakeStage({}, presses={1: signal.SIGINT})}  # ignores SIGINT and SIGTERM
    raised, _ = _fake_run(tmp_path, monkeypatch, fakes)
    assert isinstance(raised, KeyboardInterrupt)
    assert fakes["a"].signals == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def test_failed_stage_terminates_the_others(tmp_path, monkeypatch):
    fakes = {"bad": FakeStage({}, status=1), "other": FakeStage({signal.SIGTERM: (1, -15)})}
    raised, _ = _fake_run(tmp_path, monkeypatch, fakes)
    assert isinstance(raised, StageFailed) and "stage bad failed (exit 1)" in str(raised)
    assert fakes["other"].signals == [signal.SIGTERM]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_closed_terminal_terminates_the_stages(tmp_path, monkeypatch, signum):
    """The stages have their own process groups, so the runner must pass these on itself."""
    signum = getattr(signal, signum)
    # As in a terminal (a pytest-xdist worker handles SIGTERM itself): the default disposition.
    previous = signal.signal(signum, signal.SIG_DFL)
    try:
        fakes = {"a": FakeStage({signal.SIGTERM: (1, -15)}, presses={1: signum})}
        raised, _ = _fake_run(tmp_path, monkeypatch, fakes)
        assert isinstance(raised, SystemExit) and raised.code == 128 + signum
        assert fakes["a"].signals == [signal.SIGTERM]
        assert signal.getsignal(signum) is signal.SIG_DFL  # put back
    finally:
        signal.signal(signum, previous)


@pytest.mark.parametrize(
    "argv, out_given, expected",
    [
        (["/venv/bin/reft", "demo", "--quick", "--out", "runs/a", "seeds=0,1"], True,
         "reft demo --resume --quick --out runs/a seeds=0,1"),
        (["/x/reft/__main__.py", "demo", "seeds=1"], False,  # the default's timestamped folder
         "python -m reft demo --resume --out 'runs/demo 1' seeds=1"),
        (["reft", "-v", "demo", "--resume", "true", "--out", "o", "resume=true"], True,
         "reft -v demo --resume --out o"),  # resumed again
    ],
)  # fmt: skip
def test_demo_resume_command(argv, out_given, expected):
    assert resume_command(Path("runs/demo 1"), out_given, argv) == expected


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


def _demo_command(out: Path, bases: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "reft", "demo", "--quick", "--out", str(out),
            f"base_cache={bases}", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted `reft demo --quick` (it builds the base the other demos reuse): the
    folder holding its `demo` and `bases`, and the finished process."""
    root = tmp_path_factory.mktemp("quick")
    run = subprocess.run(_demo_command(root / "demo", root / "bases"), capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return root, run


def _numbers(out: Path) -> dict:
    """What a demo computed: results.json's accuracies and every stage's metrics.jsonl, less the
    times and speeds."""
    results = json.loads((out / "results.json").read_text())
    numbers = {key: results[key] for key in ("methods", "k_curves", "generalisation",
                                             "reward_model_dev")}  # fmt: skip
    for metrics in sorted(out.glob("seed_*/*/metrics.jsonl")):
        records = [json.loads(line) for line in metrics.read_text().splitlines()]
        numbers[metrics.parent.name] = [
            {k: v for k, v in record.items() if not k.startswith("time") and "_per_s" not in k}
            for record in records
        ]
    return numbers


@pytest.mark.slow
def test_quick_demo_end_to_end(quick_demo):
    """`reft demo --quick` runs every stage and writes the artefacts (not a test of the accuracy gap)."""
    tmp_path, run = quick_demo
    out = tmp_path / "demo"
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
        [sys.executable, "-m", "reft", "-v", "demo", "--quick", "--out", str(tmp_path / "again"),
         f"base_cache={tmp_path / 'bases'}", "seeds=5", "task.train_size=100"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "base.json").read_text())["cached"] is True
    assert "reft -v demo --quick --out" in (tmp_path / "again" / "report.md").read_text()


@pytest.mark.slow
def test_quick_demo_ctrl_c_then_resume(quick_demo):
    """Ctrl-C while a training stage runs: the stage checkpoints, the demo exits 130 and prints
    the command that continues it, which then computes what an uninterrupted demo computes."""
    root, _ = quick_demo
    out = root / "interrupted"
    demo = subprocess.Popen(_demo_command(out, root / "bases"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seed_dir = out / "seed_0"
    warmup, log = Stage("warmup", [], seed_dir / "warmup"), seed_dir / "logs" / "warmup.log"
    deadline, bar = time.monotonic() + 300, None
    while bar is None or bar[0] < 1:  # the warm-up has taken a step
        assert demo.poll() is None and time.monotonic() < deadline, "the warm-up never started"
        time.sleep(0.02)
        bar = _last_progress(log)
    demo.send_signal(signal.SIGINT)  # what the terminal's Ctrl-C sends the demo
    stdout, stderr = demo.communicate(timeout=300)
    assert demo.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert "interrupted: waiting up to" in stdout and "warmup: stopped (exit 130)" in stdout
    assert not done_marker(warmup).exists()
    assert 1 <= Checkpointer(warmup.out_dir).latest().step < bar[1]  # a checkpoint mid-way
    # The stage's own resume line (in its log) names its own command, not the demo's.
    assert "Continue with:\n  reft sft " in log.read_text()
    command = stderr.split("Continue with:\n")[1].splitlines()[0].strip()
    assert shlex.split(command) == ["python", "-m", "reft", "demo", "--resume",
                                    *_demo_command(out, root / "bases")[4:]]  # fmt: skip
    resumed = subprocess.run([sys.executable, *shlex.split(command)[1:]], capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resumed sft from {warmup.out_dir}" in log.read_text()
    assert _numbers(out) == _numbers(root / "demo")
