"""Nothing lost: output paths checked before any work, atomic writes that leave no temporary files,
a full disk named as such, best/ that survives a kill, resume refused when the settings changed, and
Ctrl-C that checkpoints and resumes to byte-identical weights."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import reft.files
from reft.checkpoint import META_FILE, Checkpointer
from reft.cli import main
from reft.config import ConfigError, config_to_dict
from reft.files import OutputPathError, check_output_file, write_text_atomic
from reft.metrics import read_metrics
from reft.train.config import Schedule, SFTConfig
from reft.train.interrupt import resume_command
from reft.train.resume import check_resume

TINY = [
    "model=preset:micro-llama",
    "train_data=synth:train:64",
    "preset_vocab_size=300",
    "batch_size=8",
    "micro_batch_size=8",
    "lr=3e-3",
    "max_length=256",
    "eval_max_new_tokens=8",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _sft(out: Path, *extra: str) -> int:
    return main(["sft", *TINY, f"out_dir={out}", *extra])


def _weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step_{step:06d}" / "model.safetensors")


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _leftovers(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if ".tmp-" in path.name or ".old-best" in path.name]


# ---- output paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lr0.001", "e.v2"])
def test_dotted_out_dir_is_a_directory(tmp_path, name):
    out = tmp_path / "runs" / name
    assert _sft(out, "max_steps=1", "dev_data=null") == 0
    assert (out / "config.yaml").is_file() and (out / "best" / META_FILE).is_file()
    assert _sft(out, "max_steps=1", "dev_data=null", "resume=true") == 0  # reruns work too


def _write_completions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _grade(inp: Path, out: Path) -> int:
    return main(["grade", "--cot", "nl", "--input", str(inp), "--output", str(out)])


BAD_OUTPUTS = [
    # (case, make the output path from the input path and tmp dir, message)
    ("output is the input", lambda inp, tmp: inp, "is the input file"),
    ("a symlink to the input", lambda inp, tmp: _link(tmp / "l.jsonl", inp, os.symlink), "input"),
    ("a hard link to the input", lambda inp, tmp: _link(tmp / "h.jsonl", inp, os.link), "input"),
    ("an existing folder", lambda inp, tmp: _folder(tmp / "graded"), "is a directory"),
    ("under a file", lambda inp, tmp: _file(tmp / "f") / "graded.jsonl", "is not a directory"),
]


def _link(path: Path, target: Path, how) -> Path:
    how(target, path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize("case, make, message", BAD_OUTPUTS, ids=[c[0] for c in BAD_OUTPUTS])
def test_grade_refuses_an_output_it_cannot_write(tmp_path, capsys, case, make, message):
    inp = _write_completions(
        tmp_path / "in.jsonl", [{"completion": "The answer is 3", "answer": 3}]
    )
    before = inp.read_bytes()
    out = make(inp, tmp_path)
    assert _grade(inp, out) == 2, case
    err = capsys.readouterr().err
    assert message in err and "--output" in err, err
    assert inp.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_grade_refuses_a_number_as_completion_and_warns_on_empty_input(tmp_path, capsys, caplog):
    inp = _write_completions(tmp_path / "in.jsonl", [{"completion": 42, "answer": 42}])
    assert _grade(inp, tmp_path / "out.jsonl") == 2
    assert "line 1: field 'completion': expected a string, got int" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert _grade(empty, tmp_path / "out.jsonl") == 0
    assert "holds no completions" in caplog.text
    assert (tmp_path / "out.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "model={model}", "out={folder}"], "out {folder} is a directory"),
        (["sft", "model={model}", "out_dir={file}"], "exists and is not a directory"),
        (["eval", "model={model}", "out_dir={file}"], "exists and is not a directory"),
        (["data", "synth", "--split", "dev", "--n", "4", "--out", "{folder}"], "is a directory"),
    ],
)
def test_bad_output_paths_are_refused_before_any_work(tmp_path, capsys, argv, message):
    paths = {"folder": _folder(tmp_path / "d"), "file": _file(tmp_path / "f")}
    # A model that passes the model checks (a directory with a config.json) but would fail to load.
    paths["model"] = _folder(tmp_path / "model")
    (paths["model"] / "config.json").write_text("{}")
    assert main([arg.format(**paths) for arg in argv]) == 2
    assert message.format(**paths) in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_check_output_file_accepts_a_new_file_beside_its_input(tmp_path):
    inp = _file(tmp_path / "in.jsonl")
    assert check_output_file(tmp_path / "new" / "out.jsonl", inputs=[inp]).name == "out.jsonl"
    with pytest.raises(OutputPathError, match="is the input"):
        check_output_file(inp, inputs=[inp])


# ---- failed writes and a full disk ----------------------------------------------------------------


def test_a_failed_atomic_write_leaves_the_target_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")
    monkeypatch.setattr(Path, "replace", _raise(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_disk_full_during_a_checkpoint_is_named_and_resume_works_once_space_is_freed(
    tmp_path, monkeypatch, capsys
):
    steps = ["max_steps=4", "save_every=2", "dev_data=null", "log_every=1"]
    assert _sft(tmp_path / "unbroken", *steps) == 0

    out = tmp_path / "full"
    real_save = torch.save

    def save_then_fill_disk(state, path, *args, **kwargs):
        if "step_000004" in str(
            path
        ):  # the second checkpoint: write part of it, then fail as torch does
            Path(path).write_bytes(b"partial")
            raise RuntimeError(
                "[enforce fail at inline_container.cc:664] . unexpected pos 4096 vs 0"
            )
        return real_save(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill_disk)
    monkeypatch.setattr(reft.files.shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
    assert _sft(out, *steps) == 1
    err = capsys.readouterr().err
    assert "no space left on device" in err and str(out / "checkpoints" / "step_000004") in err, err
    assert "step_000002" in err and "resume=true" in err
    assert _leftovers(out) == []
    assert Checkpointer(out).latest().step == 2

    monkeypatch.undo()  # space freed
    assert _sft(out, *steps, "resume=true") == 0
    _assert_same_weights(_weights(tmp_path / "unbroken", 4), _weights(out, 4))


# ---- best/ survives a kill ------------------------------------------------------------------------

KILL_AT_BEST = """
import os, shutil, sys
from reft.checkpoint import Checkpointer

def killed(self, checkpoint):  # a kill -9 while best/ is being replaced
    if sys.argv[1] == "in_copy":
        shutil.copytree(checkpoint.path, self.best_dir.with_name(f".tmp-best-{os.getpid()}"))
    os._exit(9)

Checkpointer.mark_best = killed
from reft.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("when", ["before_copy", "in_copy"])
def test_kill_between_checkpoint_and_best_copy_ends_with_the_unbroken_best(tmp_path, when, caplog):
    steps = ["max_steps=4", "eval_every=2", "dev_data=synth:dev:4", "log_every=1"]
    assert _sft(tmp_path / "unbroken", *steps) == 0
    out = tmp_path / "killed"
    argv = ["sft", *TINY, f"out_dir={out}", *steps]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_BEST, when, *argv], env=ENV, timeout=600)
    assert killed.returncode == 9
    assert _sft(out, *steps, "resume=true") == 0
    expected = Checkpointer(tmp_path / "unbroken").best_step()
    assert Checkpointer(out).best_step() == expected
    assert "no dev improvement recorded" not in caplog.text
    assert _leftovers(out) == []
    best = load_file(out / "best" / "model.safetensors")
    _assert_same_weights(load_file(tmp_path / "unbroken" / "best" / "model.safetensors"), best)


def _fake_checkpoint(root: Path, step: int) -> None:
    path = root / "checkpoints" / f"step_{step:06d}"
    path.mkdir(parents=True)
    (path / META_FILE).write_text(json.dumps({"step": step}))


def test_repair_best_after_a_kill_between_the_two_renames(tmp_path):
    """Killed after best/ moved aside and before the new copy moved in: best/ is missing."""
    for step in (2, 4):
        _fake_checkpoint(tmp_path, step)
    checkpointer = Checkpointer(tmp_path)
    (tmp_path / ".old-best-123").mkdir()
    (tmp_path / ".tmp-best-123").mkdir()
    checkpointer.repair_best(4)
    assert checkpointer.best_step() == 4 and _leftovers(tmp_path) == []
    checkpointer.repair_best(4)  # nothing to do the second time
    assert checkpointer.best_step() == 4


# ---- resume with changed settings -----------------------------------------------------------------

RESUME_CASES = [
    # (changed settings, refused keys or None when accepted)
    ({"lr": 1e-3}, ["lr"]),
    ({"batch_size": 16, "micro_batch_size": 16}, ["batch_size", "micro_batch_size"]),
    ({"max_steps": 10}, ["max_steps"]),  # a linear schedule spans max_steps
    ({"max_steps": 10, "schedule": "constant_with_warmup"}, ["schedule"]),
    ({"log_every": 1, "keep_last": 5, "stop_epochs": 2.0}, None),
]


@pytest.mark.parametrize("changed, refused", RESUME_CASES)
def test_check_resume_refuses_exactly_the_changes_that_alter_the_computation(changed, refused):
    saved = {"lr": 3e-3, "batch_size": 8, "micro_batch_size": 8, "max_steps": 4, "log_every": 10,
             "keep_last": 2, "stop_epochs": 0.0, "schedule": "linear", "warmup_ratio": 0.0,
             "resume": False}  # fmt: skip
    current = {**saved, **changed, "resume": True}
    if refused is None:
        assert check_resume(saved, current, "ckpt") == {
            k: (saved[k], v) for k, v in changed.items()
        }
        return
    with pytest.raises(ConfigError) as error:
        check_resume(saved, current, "ckpt")
    listed = str(error.value).split("computation: ")[1].split(". Resume")[0]
    assert sorted(change.split(" ")[0] for change in listed.split(", ")) == refused


def test_a_longer_run_is_allowed_under_a_constant_schedule():
    """Checked on a real config's dict: the constant schedule is constant_with_warmup, no warm-up."""
    saved = config_to_dict(SFTConfig(schedule=Schedule.constant_with_warmup, warmup_ratio=0.0,
                                     max_steps=4))  # fmt: skip
    assert check_resume(saved, {**saved, "max_steps": 8}, "ckpt") == {"max_steps": (4, 8)}


def test_a_checkpoint_saved_with_flat_sampling_keys_resumes_into_the_sections():
    """A config saved before the sampling / grading sections existed names their settings flat:
    they are compared with the sections' settings one by one."""
    from reft.config import nest_aliases
    from reft.train.config import PPOConfig

    current = config_to_dict(PPOConfig())
    old = {key: value for key, value in current.items() if key not in ("sampling", "grading")}
    old |= {
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "max_new_tokens": 256,
        "rollout_batch_size": 64,
        "timeout_s": 10.0,
    }  # an old version: partial_reward not saved
    assert check_resume(nest_aliases(PPOConfig, old, "ckpt"), current, "ckpt") == {}
    with pytest.raises(ConfigError, match=r"sampling.temperature 1.0 -> 0.5"):
        changed = {**current, "sampling": {**current["sampling"], "temperature": 0.5}}
        check_resume(nest_aliases(PPOConfig, old, "ckpt"), changed, "ckpt")


def test_resume_with_a_changed_lr_is_refused_and_an_allowed_change_is_recorded(tmp_path, capsys):
    out = tmp_path / "sft"
    assert _sft(out, "max_steps=2", "dev_data=null") == 0
    config_before = (out / "config.yaml").read_text()
    assert _sft(out, "max_steps=2", "dev_data=null", "lr=1e-3", "resume=true") == 2
    err = capsys.readouterr().err
    assert "lr 0.003 -> 0.001" in err and "would change the computation" in err
    assert (out / "config.yaml").read_text() == config_before  # nothing rewritten
    (out / "complete.json").unlink()  # as if killed after its last checkpoint, before the record
    assert _sft(out, "max_steps=2", "dev_data=null", "log_every=1", "resume=true") == 0
    record = json.loads((out / "resumed_with_changes.jsonl").read_text())
    assert record == {"step": 2, "changed": {"log_every": [10, 1]}}
    assert "log_every: 1" in (out / "config.yaml").read_text()


# ---- Ctrl-C ---------------------------------------------------------------------------------------


def test_resume_command_repeats_the_command_with_resume():
    argv = ["/venv/bin/reft", "sft", "out_dir=runs/a b", "--resume"]
    assert resume_command(argv) == "reft sft 'out_dir=runs/a b' resume=true"
    assert resume_command(["/x/reft/__main__.py", "train"]) == "python -m reft train resume=true"


def test_ctrl_c_checkpoints_the_step_and_resumes_to_identical_weights(tmp_path):
    steps = ["max_steps=40", "save_every=1000", "dev_data=null", "log_every=1"]
    assert _sft(tmp_path / "unbroken", *steps) == 0
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "reft", "sft", *TINY, f"out_dir={out}", *steps]
    victim = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline and victim.poll() is None:
        logged = (out / "metrics.jsonl").is_file() and len(read_metrics(out, "train")) >= 5
        if logged:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be interrupted"
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=600)
    assert victim.returncode == 130, err
    stopped = Checkpointer(out).latest().step
    assert 5 <= stopped < 40 and f"checkpoint of step {stopped} written" in err, err
    assert "resume=true" in err and "Traceback" not in err
    assert [r["step"] for r in read_metrics(out, "train")] == list(range(1, stopped + 1))
    assert _sft(out, *steps, "resume=true") == 0
    _assert_same_weights(_weights(tmp_path / "unbroken", 40), _weights(out, 40))


def test_resuming_a_finished_run_says_so_at_once_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "done"
    steps = ["max_steps=6", "dev_data=null"]
    assert _sft(out, *steps) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".reft.lock"}
    capsys.readouterr()
    assert _sft(out, *steps, "resume=true", "log_every=3") == 0  # a record-only change: still done
    said = capsys.readouterr().out
    assert "already complete (finished at step 6" in said and f"its result: {out / 'best'}" in said
    assert {p: p.read_bytes() for p in files} == files


def test_a_path_spelled_absolute_on_resume_is_the_same_setting(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.json").write_text("[]")
    monkeypatch.chdir(tmp_path)
    saved = {"train_data": "data/train.json", "lr": 1e-3}
    assert (
        check_resume(saved, {**saved, "train_data": str(tmp_path / "data/train.json")}, "c") == {}
    )
    with pytest.raises(ConfigError, match=r"train_data 'data/train\.json' -> 'data/other\.json'"):
        check_resume(saved, {**saved, "train_data": "data/other.json"}, "c")
