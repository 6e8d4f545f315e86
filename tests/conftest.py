"""Shared fixtures: the read-only datasets beside the repo and a tokenizer trained on the spot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one torch thread each, in the processes they launch too
    # (two 2-thread torch processes on 2 cores run many times slower than two 1-thread ones).
    os.environ["OMP_NUM_THREADS"] = "1"
    import signal

    import torch

    torch.set_num_threads(1)
    # A worker ignores Ctrl-C (execnet); give it back Python's handler, which the processes it
    # starts inherit, so the Ctrl-C tests see what a terminal gives them.
    signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared datasets are not beside this checkout")
    return path


@pytest.fixture
def shared_file():
    """`shared_file("mwp_reft/svamp_nl.json")`: a file of ../shared/data, or skip saying it is absent."""
    return _shared_file


@pytest.fixture(scope="session")
def shared_demo_bases(tmp_path_factory) -> Path:
    """One demo base cache for the whole run, every xdist worker included: the quick demos that
    need the same base build it once (the others wait on its lock, then reuse it)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' folders share this parent
    return root / "demo_bases"


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer trained on synthetic problems (pad != eos)."""
    from reft.data.prompts import render_prompt
    from reft.data.synthetic import SynthConfig, generate_problems
    from reft.models.tokenizer import train_tokenizer

    problems = generate_problems(SynthConfig(), "train", 300)
    texts = [render_prompt(p.question) + p.nl_cot for p in problems] + [p.program for p in problems]
    return train_tokenizer(texts, vocab_size=400)


def _write_digit_game(path: Path, answers: list[str]) -> Path:
    records = [
        {"item_id": f"pick_{i}", "question": f"Pick a digit for game {i}.", "answer_cot": "I pick one.",
         "answer_value": answer}
        for i, answer in enumerate(answers)
    ]  # fmt: skip
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="session")
def digit_game():
    """`digit_game(path, answers)` writes the toy task of the trainer tests and returns `path`.

    Every question is "Pick a digit for game i." with the gold solution "I pick one.": SFT on random
    answers teaches a uniform pick, and a file whose answers are all "7" then rewards one pick in ten,
    a task any working policy-gradient or self-training method improves on quickly.
    """
    return _write_digit_game


def _digit_game_start(root: Path, num_games: int) -> dict[str, Path]:
    from reft.models.presets import init_tiny_checkpoint

    data = _write_digit_game(root / "rl.json", [str(i % 10) for i in range(num_games)])
    texts = [
        "Question:\nPick a digit.\nAnswer reasoning:\nI pick one.\nTherefore, the answer is: 7"
    ]
    init_tiny_checkpoint("micro-llama", texts * 8, root / "init", vocab_size=300)
    return {"model": root / "init", "data": data}


@pytest.fixture(scope="session")
def digit_game_start():
    """`digit_game_start(root, num_games)`: an untrained micro-llama checkpoint under root/init and a
    digit game of `num_games` questions (answers 0-9 in turn) at root/rl.json, as {"model", "data"}."""
    return _digit_game_start
