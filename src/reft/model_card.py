"""A model card (README.md) in every checkpoint, so a folder copied away or pushed to the Hub still
says how it was trained and how well it did.

The card holds Hugging Face's model-card metadata (base model, datasets, tags), the command and the
resolved config of the run, the dev results measured at that step (if any) and, once `reft eval` has
run on the checkpoint, its results on each evaluated dataset. Nothing else: no number the run did not
measure. The card is left out of the checkpoint's manifest (reft.manifest), since `reft eval` adds to
it later; the weights and trainer state stay vouched for.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from reft import __version__
from reft.files import write_text_atomic

CARD_FILE = "README.md"
STAGE_TAGS = {
    "sft": ["sft"],
    "reft": ["ppo", "rl"],
    "self-train-offline": ["self-training"],
    "self-train-online": ["self-training"],
    "rm": ["reward-model"],
}
"""Tags per TrainingRun stage, after `reft` and `math-reasoning`."""
_EVAL_HEADING = "## Evaluation on "


def card_metadata(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The card's YAML header: base_model and datasets only where they name Hub entries."""
    from huggingface_hub import ModelCardData

    model, data = str(config.get("model", "")), str(config.get("train_data", ""))
    hub_model = not model.startswith("preset:") and not Path(model).exists()
    hub_data = data.removeprefix("hf:").split(":")[0] if data.startswith("hf:") else None
    card = ModelCardData(
        base_model=model if hub_model and model else None,
        datasets=[hub_data] if hub_data else None,
        library_name="transformers",
        tags=["reft", "math-reasoning", *STAGE_TAGS.get(stage, [])],
    )
    return card.to_dict()


def write_model_card(directory: str | Path, meta: dict[str, Any]) -> Path:
    """Write `directory`/README.md from a checkpoint's meta (stage, step, epoch, dev, config)."""
    config, stage = meta.get("config") or {}, str(meta.get("stage", ""))
    header = yaml.safe_dump(card_metadata(config, stage), sort_keys=False).strip()
    dev = meta.get("dev")
    lines = [
        f"---\n{header}\n---",
        f"# {stage} checkpoint at step {meta.get('step')}",
        "",
        f"Trained with reft {__version__} from `{config.get('model')}` on "
        f"`{config.get('train_data')}` (epoch {meta.get('epoch', 0):.2f}). Command:",
        "",
        f"```bash\n{shlex.join(['reft', *sys.argv[1:]])}\n```",
        "",
        f"## Dev results at step {meta.get('step')}",
        "",
        _table(dev) if dev else "No dev evaluation at this step.",
        "",
        "## Training configuration",
        "",
        f"```yaml\n{yaml.safe_dump(config, sort_keys=True).strip()}\n```",
    ]
    return write_text_atomic(Path(directory) / CARD_FILE, "\n".join(lines) + "\n")


def add_evaluation(directory: str | Path, dataset: str, metrics: dict[str, Any]) -> bool:
    """Put `reft eval`'s metrics on `dataset` into the card of checkpoint `directory` (replacing an
    earlier evaluation of the same dataset); False when the folder has no reft card."""
    path = Path(directory) / CARD_FILE
    if not path.is_file() or not path.read_text().startswith("---"):
        return False
    heading = f"{_EVAL_HEADING}`{dataset}`"
    text = _without_section(path.read_text(), heading)
    numbers = {key: value for key, value in metrics.items() if isinstance(value, int | float)}
    write_text_atomic(path, f"{text.rstrip()}\n\n{heading}\n\n{_table(numbers)}\n")
    return True


def _table(metrics: dict[str, Any]) -> str:
    rows = [f"| {key} | {json.dumps(value)} |" for key, value in metrics.items()]
    return "\n".join(["| metric | value |", "|---|---|", *rows])


def _without_section(text: str, heading: str) -> str:
    """`text` less the section that starts at `heading` (up to the next `## ` heading)."""
    pattern = re.compile(rf"\n{re.escape(heading)}\n.*?(?=\n## |\Z)", re.DOTALL)
    return pattern.sub("", text)
