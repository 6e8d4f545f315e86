"""Every checkpoint carries a model card: Hub metadata, the command and config, the dev results of
its step (equal to metrics.jsonl), and the test results once `reft eval` has run on it."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM

from reft.cli import main
from reft.manifest import manifest_problems
from reft.metrics import read_metrics
from reft.model_card import add_evaluation, card_metadata

TINY = ["model=preset:micro-llama", "train_data=synth:train:64", "preset_vocab_size=300",
        "batch_size=8", "micro_batch_size=8", "lr=3e-3", "max_length=256", "max_steps=8",
        "dev_data=synth:dev:8", "eval_every=4", "eval_max_new_tokens=4"]  # fmt: skip


def test_best_checkpoint_card_holds_the_runs_own_numbers_and_its_eval(tmp_path):
    out = tmp_path / "sft"
    assert main(["sft", *TINY, f"out_dir={out}"]) == 0
    card = ModelCard.load(out / "best" / "README.md")
    assert card.data.tags == ["reft", "math-reasoning", "sft"] and card.data.base_model is None
    step = json.loads((out / "best" / "reft_meta.json").read_text())["step"]
    dev = next(r for r in read_metrics(out, "dev") if r["step"] == step)
    assert f"## Dev results at step {step}" in card.text
    assert f"| accuracy | {json.dumps(dev['accuracy'])} |" in card.text
    assert "reft sft" in card.text and "lr: 0.003" in card.text
    AutoModelForCausalLM.from_pretrained(out / "best")  # still a plain Hugging Face folder
    evaluated = tmp_path / "eval"
    assert main(["eval", f"model={out / 'best'}", "dataset=synth:dev:6", "max_new_tokens=4",
                 f"out_dir={evaluated}"]) == 0  # fmt: skip
    top1 = json.loads((evaluated / "results.json").read_text())["metrics"]["top1"]
    text = (out / "best" / "README.md").read_text()
    assert "## Evaluation on `synth:dev:6`" in text and f"| top1 | {json.dumps(top1)} |" in text
    assert (
        manifest_problems(out / "best") == []
    )  # the card is not part of what the manifest vouches


def test_an_evaluation_of_the_same_dataset_replaces_the_earlier_one(tmp_path):
    (tmp_path / "README.md").write_text(
        "---\ntags:\n- reft\n---\n# x\n\n## Training configuration\n"
    )
    assert add_evaluation(tmp_path, "test.json", {"top1": 0.1, "curves": {"k": [1]}})
    assert add_evaluation(tmp_path, "test.json", {"top1": 0.2})
    assert add_evaluation(tmp_path, "other.json", {"top1": 0.3})
    text = (tmp_path / "README.md").read_text()
    assert text.count("## Evaluation on `test.json`") == 1 and "| top1 | 0.2 |" in text
    assert "| top1 | 0.1 |" not in text and "## Evaluation on `other.json`" in text
    assert not add_evaluation(tmp_path / "missing", "test.json", {"top1": 0.1})


def test_metadata_names_only_hub_models_and_datasets(tmp_path):
    hub = card_metadata(
        {"model": "Qwen/Qwen2.5-0.5B", "train_data": "hf:openai/gsm8k:main"}, "reft"
    )
    assert hub["base_model"] == "Qwen/Qwen2.5-0.5B" and hub["datasets"] == ["openai/gsm8k"]
    assert hub["tags"] == ["reft", "math-reasoning", "ppo", "rl"]
    local = card_metadata({"model": str(tmp_path), "train_data": "data/train.json"}, "rm")
    assert "base_model" not in local and "datasets" not in local
