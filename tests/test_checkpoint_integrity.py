"""Checkpoints that prove their integrity: a damaged file is named, a resume falls back to the newest
intact checkpoint and still ends on the unbroken run's weights, and a damaged model is named on load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reft.checkpoint import Checkpointer
from reft.cli import main
from reft.config import ConfigError
from reft.manifest import (
    MANIFEST_FILE,
    CorruptCheckpointError,
    manifest_problems,
    verify_checkpoint,
    write_manifest,
)
from reft.models.load import load_causal_lm

TINY = ["model=preset:micro-llama", "train_data=synth:train:64", "preset_vocab_size=300",
        "batch_size=8", "micro_batch_size=8", "lr=3e-3", "max_length=256", "dev_data=null",
        "epochs=4", "save_every=4", "keep_last=2"]  # fmt: skip
"""4 steps per epoch, 16 in all, a checkpoint every 4."""


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0x01  # inside the tensor data, past every header
    path.write_bytes(bytes(data))


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_manifest_names_each_changed_missing_or_truncated_file(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.bin", "b.bin", "c.bin", "sub/d.bin"):
        (tmp_path / name).write_bytes(bytes(range(256)) * 8)
    assert manifest_problems(tmp_path) == []  # no manifest: nothing to check against
    write_manifest(tmp_path)
    assert manifest_problems(tmp_path) == []
    _truncate(tmp_path / "a.bin")
    _flip_a_bit(tmp_path / "b.bin")
    (tmp_path / "sub" / "d.bin").unlink()
    problems = manifest_problems(tmp_path)
    assert problems == [f"{tmp_path / 'a.bin'}: 1024 bytes, 2048 written",
                        f"{tmp_path / 'b.bin'}: its SHA-256 differs from the one written (bytes changed)",
                        f"{tmp_path / 'sub' / 'd.bin'}: missing"]  # fmt: skip
    with pytest.raises(CorruptCheckpointError, match=r"a\.bin: 1024 bytes"):
        verify_checkpoint(tmp_path)


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unbroken")
    assert main(["sft", *TINY, f"out_dir={out}"]) == 0
    return out


@pytest.mark.parametrize("damage", [_truncate, _flip_a_bit], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("name", ["model.safetensors", "trainer_state.pt"])
def test_resume_falls_back_past_a_damaged_checkpoint_to_the_unbroken_weights(
    tmp_path, caplog, unbroken, name, damage
):
    out = tmp_path / "run"
    assert main(["sft", *TINY, f"out_dir={out}", "stop_epochs=2"]) == 0  # stops at step 8
    assert [c.step for c in Checkpointer(out).list()] == [4, 8]
    damage(out / "checkpoints" / "step_000008" / name)
    with caplog.at_level(logging.INFO):
        assert main(["sft", *TINY, f"out_dir={out}", "resume=true"]) == 0
    assert f"step_000008/{name}" in caplog.text and "trying the one before" in caplog.text
    assert (out / "checkpoints" / "corrupt-step_000008" / name).exists()  # kept, set aside
    assert "resumed sft from" in caplog.text and "(step 4)" in caplog.text
    expected, resumed = _weights(unbroken / "final"), _weights(out / "final")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_resume_with_no_intact_checkpoint_exits_2_and_says_how_to_go_on(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sft", *TINY, f"out_dir={out}", "stop_epochs=2"]) == 0
    for checkpoint in Checkpointer(out).list():
        _truncate(checkpoint.path / "trainer_state.pt")
    assert main(["sft", *TINY, f"out_dir={out}", "resume=true"]) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "without resume=true in a new out_dir" in err


def test_a_damaged_best_is_copied_again_from_its_checkpoint_on_resume(tmp_path, caplog):
    out = tmp_path / "run"
    dev = ["dev_data=synth:dev:8", "eval_every=4", "eval_max_new_tokens=4"]
    assert main(["sft", *TINY, *dev, f"out_dir={out}", "stop_epochs=2"]) == 0
    _flip_a_bit(out / "best" / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert main(["sft", *TINY, *dev, f"out_dir={out}", "resume=true"]) == 0
    assert "best/ is corrupt" in caplog.text
    assert manifest_problems(out / "best") == [] and (out / "best" / MANIFEST_FILE).is_file()


def test_loading_a_damaged_model_names_the_file(tmp_path, unbroken):
    with_manifest = unbroken / "final"
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in with_manifest.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    _flip_a_bit(copy / "model.safetensors")
    with pytest.raises(CorruptCheckpointError, match=r"copy/model.safetensors: its SHA-256"):
        load_causal_lm(str(copy), device="cpu")
    (copy / MANIFEST_FILE).unlink()  # a folder from elsewhere: safetensors' own error, named
    _truncate(copy / "model.safetensors")
    with pytest.raises(ConfigError, match=r"copy: a .safetensors file in it is damaged"):
        load_causal_lm(str(copy), device="cpu")
