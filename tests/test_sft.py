"""SFT through the real CLI: artefacts, learning signal, and kill-then-resume equal to an unbroken run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.metrics import read_metrics

pytestmark = pytest.mark.slow

TINY = [
    "model=preset:micro-llama",
    "train_data=synth:train:256",
    "preset_vocab_size=300",
    "batch_size=16",
    "micro_batch_size=8",
    "lr=3e-3",
    "max_length=256",
    "eval_max_new_tokens=48",
]


def _run_cli(out_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "reft", "sft", *TINY, f"out_dir={out_dir}", *extra]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_sft_writes_config_metrics_checkpoints_and_best(tmp_path):
    out = tmp_path / "sft"
    assert main(["sft", *TINY, f"out_dir={out}", "max_steps=12", "eval_every=6", "dev_data=synth:dev:16",
                 "log_every=1"]) == 0  # fmt: skip
    assert "model: preset:micro-llama" in (out / "config.yaml").read_text()
    train = read_metrics(out, "train")
    dev = read_metrics(out, "dev")
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["step"] for r in dev] == [6, 12]
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "epoch"} <= set(train[0])
    assert {"accuracy", "answered", "response_tokens"} <= set(dev[0])
    assert train[-1]["loss"] < train[0]["loss"] * 0.8, "the loss should fall clearly in 12 steps"
    checkpoints = Checkpointer(out).list()
    assert [c.step for c in checkpoints] == [6, 12]  # keep_last=2
    assert (out / "best" / "model.safetensors").is_file()
    best_step = json.loads((out / "best" / "reft_meta.json").read_text())["step"]
    assert best_step in (6, 12)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(checkpoints[-1].path)
    AutoTokenizer.from_pretrained(checkpoints[-1].path)


def test_existing_run_is_not_overwritten_without_resume(tmp_path, capsys):
    out = tmp_path / "sft"
    assert main(["sft", *TINY, f"out_dir={out}", "max_steps=2", "dev_data=null"]) == 0
    assert main(["sft", *TINY, f"out_dir={out}", "max_steps=2", "dev_data=null"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_weights_and_curve(tmp_path):
    steps = ["max_steps=40", "save_every=5", "keep_last=20", "log_every=1", "dev_data=null"]
    unbroken = _run_cli(tmp_path / "a", *steps)
    assert unbroken.wait(timeout=600) == 0, unbroken.stdout.read()

    killed_dir = tmp_path / "b"
    victim = _run_cli(killed_dir, *steps)
    checkpointer = Checkpointer(killed_dir)
    deadline = time.time() + 600
    while time.time() < deadline:
        latest = checkpointer.latest()
        if latest is not None and latest.step >= 10:
            break
        assert victim.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = checkpointer.latest().step
    assert 10 <= killed_at < 40

    resumed = _run_cli(killed_dir, *steps, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()

    final_a = load_file(tmp_path / "a" / "checkpoints" / "step_000040" / "model.safetensors")
    final_b = load_file(killed_dir / "checkpoints" / "step_000040" / "model.safetensors")
    assert final_a.keys() == final_b.keys()
    for name in final_a:
        assert torch.equal(final_a[name], final_b[name]), name
    curve_a = [(r["step"], r["loss"], r["lr"]) for r in read_metrics(tmp_path / "a", "train")]
    curve_b = [(r["step"], r["loss"], r["lr"]) for r in read_metrics(killed_dir, "train")]
    assert curve_a == curve_b


def test_stop_epochs_keeps_the_long_schedule_and_links_final(tmp_path):
    """The reference's warm-up is epoch 2 of its 40-epoch run: the schedule spans all epochs."""
    out = tmp_path / "warmup"
    assert main(["sft", *TINY, f"out_dir={out}", "epochs=4", "stop_epochs=1", "dev_data=null",
                 "log_every=1", "warmup_ratio=0"]) == 0  # fmt: skip
    train = read_metrics(out, "train")
    steps_per_epoch = len(train)
    assert train[-1]["epoch"] == 1.0
    # Linear decay over 4 epochs: after one epoch 3/4 of the peak learning rate remains.
    assert train[-1]["lr"] == pytest.approx(3e-3 * 3 / 4)
    assert (out / "final").resolve() == (
        out / "checkpoints" / f"step_{steps_per_epoch:06d}"
    ).resolve()


def test_preset_tokenizer_is_trained_on_preset_tokenizer_data(tmp_path):
    """A preset's tokenizer learns the words of `preset_tokenizer_data`, not only the training
    data's: a word only the tokenizer corpus holds becomes one token."""
    from transformers import AutoTokenizer

    from reft.data.example import AnswerKind, Example
    from reft.data.loaders import write_examples

    word = "zorbletronic"
    corpus = [Example(f"t{i}", f"The {word} box holds {i} cards.", str(i), AnswerKind.numeric,
                      "synth", f"The {word} box holds {i} cards.") for i in range(300)]  # fmt: skip
    write_examples(tmp_path / "tokenizer.json", corpus)
    common = [*TINY, "max_steps=1", "dev_data=null"]
    assert main(["sft", *common, f"out_dir={tmp_path / 'a'}",
                 f"preset_tokenizer_data={tmp_path / 'tokenizer.json'}"]) == 0  # fmt: skip
    assert main(["sft", *common, f"out_dir={tmp_path / 'b'}"]) == 0
    with_corpus = AutoTokenizer.from_pretrained(tmp_path / "a" / "init")
    without = AutoTokenizer.from_pretrained(tmp_path / "b" / "init")
    assert len(with_corpus.tokenize(" " + word)) == 1
    assert len(without.tokenize(" " + word)) > 1


def test_step_peak_memory_is_logged_per_step_on_an_accelerator(monkeypatch):
    """On CUDA each logged step carries the peak allocated since the last step (the peak is reset
    after reading); on CPU nothing is logged rather than a meaningless 0."""
    from reft.train.loop import step_peak_memory

    peaks, resets = iter([3 * 2**30, 2**29]), []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: next(peaks))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: resets.append(device))
    gpu = torch.device("cuda", 0)
    assert step_peak_memory(gpu) == {"memory_peak_gib": 3.0}
    assert step_peak_memory(gpu) == {"memory_peak_gib": 0.5}
    assert resets == [gpu, gpu]
    assert step_peak_memory(torch.device("cpu")) == {}
