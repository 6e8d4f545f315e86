"""Held-out dev splits: seeded, disjoint from training, and the loop's stop_epochs / final link."""

from __future__ import annotations

import pytest

from reft.config import load_config
from reft.data.loaders import load_dataset
from reft.train.config import SFTConfig
from reft.train.data import hold_out, load_train_and_dev


def test_hold_out_is_seeded_disjoint_and_order_preserving():
    examples = load_dataset("synth:train:50")
    train, dev = hold_out(examples, 10, seed=3)
    assert len(train) == 40 and len(dev) == 10
    assert not {e.id for e in train} & {e.id for e in dev}
    assert [e.id for e in train] == [e.id for e in examples if e.id not in {d.id for d in dev}]
    assert hold_out(examples, 10, seed=3) == (train, dev)
    assert hold_out(examples, 10, seed=4)[1] != dev


@pytest.mark.parametrize("count", [0, 50, 60])
def test_hold_out_rejects_impossible_sizes(count):
    with pytest.raises(ValueError, match="dev_holdout"):
        hold_out(load_dataset("synth:train:50"), count, seed=0)


def test_config_chooses_dev_file_holdout_or_none():
    config = load_config(
        SFTConfig, None, ["train_data=synth:train:30", "dev_data=null", "dev_holdout=5"]
    )
    train, dev = load_train_and_dev(config)
    assert (len(train), len(dev)) == (25, 5)
    config = load_config(
        SFTConfig, None, ["train_data=synth:train:30", "dev_data=synth:dev:7", "dev_limit=4"]
    )
    assert len(load_train_and_dev(config)[1]) == 4
    config = load_config(SFTConfig, None, ["train_data=synth:train:30", "dev_data=null"])
    assert load_train_and_dev(config)[1] is None
