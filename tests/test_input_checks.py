"""Bad settings and inputs end in one line naming them and exit code 2, before any work starts.

Every case runs the real CLI in-process with each stage's runner replaced by one that fails the test:
a bad value must be caught while the config is built or checked, before data is read, a directory
is written or a model is loaded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reft import cli
from reft.config import ConfigError, load_config
from reft.train.config import SFTConfig

RUNNERS = [
    ("reft.train.sft", "run_sft"),
    ("reft.train.ppo", "run_ppo"),
    ("reft.train.self_train", "run_self_train"),
    ("reft.train.reward_model", "run_reward_model"),
    ("reft.evaluate.run", "run_eval"),
    ("reft.evaluate.run", "run_sample"),
]
"""Where each command's work starts (imported by the command's handler at call time)."""


@pytest.fixture
def no_work(monkeypatch):
    """Replace every stage runner with one that fails the test if it is ever called."""

    def started(*args, **kwargs):
        raise AssertionError("the stage started although its input is bad")

    for module, name in RUNNERS:
        monkeypatch.setattr(importlib.import_module(module), name, started)


@pytest.fixture
def paths(tmp_path):
    """Paths the cases refer to: a model directory, one without config.json, missing ones."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "not_a_model").mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "results.json").write_text('{"metrics": {"top1": 0.5,\n')
    (tmp_path / "other.json").write_text('{"accuracy": 0.5}')
    return {
        "model": str(model), "not_a_model": str(tmp_path / "not_a_model"),
        "missing": str(tmp_path / "missing" / "best"), "out": str(tmp_path / "out"),
        "corrupt": str(corrupt), "other": str(tmp_path / "other.json"),
    }  # fmt: skip


SFT = ["sft", "out_dir={out}"]
TRAIN = ["train", "model={model}", "out_dir={out}"]
EVAL = ["eval", "--model", "{model}", "--out-dir", "{out}"]
SAMPLE = ["sample", "--model", "{model}", "--out", "{out}/s.jsonl"]

# (command line, what the message must say); {placeholders} are filled from `paths`.
CASES = [
    ([*SFT, "lr=-1e-3"], "SFTConfig: lr=-0.001: must be > 0"),
    ([*TRAIN, "lr=0"], "PPOConfig: lr=0.0: must be > 0"),
    ([*SFT, "batch_size=8", "micro_batch_size=3"], "micro_batch_size=3: must divide batch_size=8"),
    ([*SFT, "micro_batch_size=0"], "micro_batch_size=0: must be >= 1"),
    ([*SFT, "eval_max_new_tokens=0"], "eval_max_new_tokens=0: must be >= 1"),
    ([*SFT, "warmup_ratio=1"], "warmup_ratio=1.0: must be in [0, 1)"),
    ([*SFT, "keep_last=0"], "keep_last=0: must be >= 1"),
    ([*SFT, "log_every=0"], "log_every=0: must be >= 1"),
    ([*SFT, "lr=nan"], "lr=nan: must be > 0"),
    ([*TRAIN, "max_new_tokens=0"], "PPOConfig: max_new_tokens=0: must be >= 1"),
    ([*TRAIN, "temperature=0"], "PPOConfig: temperature=0.0: must be > 0"),
    ([*TRAIN, "clip_range=-0.2"], "PPOConfig: clip_range=-0.2: must be > 0"),
    ([*TRAIN, "clip_range_value=0"], "clip_range_value=0.0: must be > 0"),
    ([*TRAIN, "gamma=1.5"], "gamma=1.5: must be in [0, 1]"),
    ([*TRAIN, "mini_batch_size=0"], "mini_batch_size=0: must be >= 1"),
    ([*TRAIN, "top_p=0"], "top_p=0.0: must be in (0, 1]"),
    (["self-train", "mode=online", "model={model}", "temperature=0"], "temperature=0.0: must be > 0"),
    (["rm", "train", "model={model}", "sample_model={model}", "batch_size=6", "micro_batch_size=4"],
     "micro_batch_size=4: must divide batch_size=6"),
    ([*SAMPLE, "temperature=0"], "SampleConfig: temperature=0.0: must be > 0"),
    ([*EVAL, "k=4", "temperature=0"], "EvalConfig: temperature=0.0: must be > 0"),
    ([*EVAL, "timeout_s=0"], "timeout_s=0.0: must be > 0"),
    ([*SFT, "model=preset:huge-llama"],
     "model=preset:huge-llama: unknown preset; known presets: preset:micro-llama, "),
    ([*SAMPLE[:2], "preset:micro-llama", *SAMPLE[3:]], "a preset is an untrained architecture"),
    ([*SFT, "model={missing}"], "model={missing}: path does not exist"),
    ([*SFT, "model=./no/such/model"], "model=./no/such/model: path does not exist"),
    ([*SFT, "model={not_a_model}"], "model={not_a_model}: a directory without config.json"),
    ([*TRAIN, "ref_model={missing}"], "ref_model={missing}: path does not exist"),
    (["self-train", "model={model}", "sample_model={missing}"], "sample_model={missing}: path does"),
    ([*EVAL, "k=2", "rerank={missing}"], "rerank={missing}: path does not exist"),
    ([*SFT, "model=reft-tests/no-such-model"],
     "model=reft-tests/no-such-model: not found locally and the hub is offline (HF_HUB_OFFLINE=1)"),
    ([*EVAL[:2], "reft-tests/no-such-model", *EVAL[3:]], "the hub is offline"),
    (["eval-table", "a={corrupt}"],
     "{corrupt}/results.json: not valid JSON (line 2, column 1: Expecting property name"),
    (["eval-table", "{other}"], "{other}: no 'metrics' object"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_bad_input_exits_2_naming_it_before_any_work(
    argv, message, paths, no_work, monkeypatch, capsys
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the cache is all there is

    def fill(text: str) -> str:
        return text.format(**paths)

    assert cli.main([fill(arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert fill(message) in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert not Path(paths["out"]).exists()


def test_a_model_that_cannot_load_is_a_config_error_naming_it(tmp_path):
    """The load-time net under the checks above (a resumed run's model, a network failure)."""
    from reft.models.load import load_tokenizer

    with pytest.raises(ConfigError, match=f"model {tmp_path}/gone: cannot be loaded"):
        load_tokenizer(str(tmp_path / "gone"))


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and every parser below it (`reft rm train` included)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _subparsers(child)
    return found


def test_every_help_renders_without_format_garbage():
    parsers = _subparsers(cli.build_parser())
    assert len(parsers) > len(cli.COMMAND_MODULES)
    for parser in parsers:
        text = parser.format_help()
        for garbage in ("%(", "<argparse", "option_strings", "CONFIG_FIELD__"):
            assert garbage not in text, (parser.prog, garbage)
    sft = next(p for p in parsers if p.prog.endswith(" sft")).format_help()
    assert "(less memory, ~30% slower)" in " ".join(sft.split())


def test_config_file_with_a_byte_order_mark_loads(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("lr: 0.002\nbatch_size: 4\nmicro_batch_size: 2\n", encoding="utf-8-sig")
    config = load_config(SFTConfig, recipe)
    assert (config.lr, config.batch_size) == (0.002, 4)


@pytest.mark.slow
def test_a_10_mb_line_with_a_preset_is_skipped_not_a_hang(tmp_path):
    """A preset trains its tokenizer on the training data, where a 10 MB word once kept BPE training
    busy for hours; now the over-length example is skipped, as with any other model. A subprocess,
    so a hang inside the tokenizer's Rust code still ends at the timeout."""
    from reft.data.synthetic import SynthConfig, generate_examples

    records = [e.to_reft_json() for e in generate_examples(SynthConfig(), split="train", n=16)]
    records.append({**records[0], "item_id": "synth_train_huge", "answer_cot": "x" * 10**7})
    data = tmp_path / "huge.jsonl"
    data.write_text("\n".join(json.dumps(record) for record in records))
    command = [sys.executable, "-m", "reft", "sft", "model=preset:micro-llama",
               f"train_data={data}", "dev_data=null", "preset_vocab_size=300", "batch_size=8",
               "micro_batch_size=8", "max_steps=1", f"out_dir={tmp_path / 'out'}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "16/17 examples kept (max_length=512); 1 skipped as over-length" in done.stderr
