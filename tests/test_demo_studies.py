"""`reft demo --study ablations|warmup`: the stage plans, the table, and (slow) both quick studies end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reft.config import load_config
from reft.demo.config import DemoConfig
from reft.demo.studies import epoch_at, plan_study, study_table, variant_label


def study_config(study: str, quick: bool = False, overrides: tuple[str, ...] = ()) -> DemoConfig:
    files = DemoConfig(quick=quick).recipe_files()
    return load_config(DemoConfig, files, [f"study={study}", *overrides])


def _settings(stage) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in stage.argv if "=" in arg)


def test_ablations_are_reft_stages_from_one_warmup_with_their_changes(tmp_path):
    config = study_config("ablations")
    stages, variants = plan_study(config, 0, tmp_path / "s", tmp_path / "d", "BASE")
    by_name = {stage.name: stage for stage in stages}
    assert variants == ["reft_full", "reft_no_kl", "reft_shared_trunk", "reft_no_partial_reward"]
    assert _settings(by_name["warmup"])["model"] == "BASE"
    for variant in variants:
        settings = _settings(by_name[variant])
        assert settings["model"] == str(tmp_path / "s" / "warmup" / "final")
        assert settings["max_steps"] == str(config.reft["max_steps"]), "the same step budget"
        assert _settings(by_name[f"eval_{variant}"])["k"] == str(config.k)
        assert "rerank" not in _settings(by_name[f"eval_{variant}"])
    assert _settings(by_name["reft_full"])["kl_coef"] == str(config.reft["kl_coef"])
    assert _settings(by_name["reft_no_kl"])["kl_coef"] == "0.0"
    assert _settings(by_name["reft_shared_trunk"])["value_model"] == "shared_trunk"
    assert _settings(by_name["reft_no_partial_reward"])["partial_reward"] == "0.0"


def test_warmup_study_starts_reft_from_each_warmup_length(tmp_path):
    shipped = study_config("warmup").warmup["stop_epochs"]
    config = study_config("warmup", overrides=(f"warmup_epochs=[2,{shipped}]",))
    stages, variants = plan_study(config, 0, tmp_path / "s", tmp_path / "d", "BASE")
    by_name = {stage.name: stage for stage in stages}
    assert variants == ["sft", "warmup_e2", "reft_e2", "warmup", f"reft_e{shipped}"]
    assert _settings(by_name["warmup_e2"])["stop_epochs"] == "2"
    assert _settings(by_name["warmup_e2"])["epochs"] == _settings(by_name["warmup"])["epochs"]
    assert f"warmup_e{shipped}" not in by_name, "the shipped length reuses the shipped warm-up"
    assert _settings(by_name["reft_e2"])["model"] == str(tmp_path / "s" / "warmup_e2" / "final")
    reft_shipped = by_name[f"reft_e{shipped}"]
    assert _settings(reft_shipped)["model"] == str(tmp_path / "s" / "warmup" / "final")
    assert _settings(by_name["sft"])["model"] == str(tmp_path / "s" / "warmup" / "final")
    assert _settings(by_name["eval_warmup_e2"])["model"].endswith("warmup_e2/final")
    assert _settings(by_name["eval_reft_e2"])["model"].endswith("reft_e2/best")


def test_unknown_study_is_refused():
    with pytest.raises(Exception, match="study='ablation'"):
        study_config("ablation")


def test_study_table_rows():
    results = {"k": 8, "seeds": [0, 1], "variants": ["reft_full", "reft_e4"],
               "methods": {"reft_full": {"top1": 0.5, "voting": 0.6}, "reft_e4": {"top1": 0.25}},
               "std": {"reft_full": {"top1": 0.01, "voting": 0.02}, "reft_e4": {"top1": 0.0}},
               "curves": {0: {"reft_full": {"dev_accuracy": [(10, 0.4), (20, 0.45)],
                                            "kl": [(20, 1.5)]}}}}  # fmt: skip
    table = study_table(results).splitlines()
    assert table[2] == "| ReFT (shipped) | 50.0 ± 1.0 | 60.0 ± 2.0 | 45.0 | 45.0 | 1.50 |"
    assert table[3] == "| ReFT from the 4-epoch warm-up | 25.0 ± 0.0 | – | – | – | – |"
    assert variant_label("warmup_e2") == "warm-up, 2 epochs"


def test_sft_dev_points_between_logged_steps_get_interpolated_epochs():
    logged = [(1, 0.125), (5, 0.625), (10, 1.25)]  # 8 steps per epoch, logged every 5 steps
    assert epoch_at(8, logged) == pytest.approx(1.0)  # a dev evaluation between two logged steps
    assert epoch_at(10, logged) == pytest.approx(1.25)
    assert epoch_at(16, logged) == pytest.approx(2.0)  # after the last logged step: its rate
    assert epoch_at(0, logged) == 0.0 and epoch_at(3, []) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("study", ["ablations", "warmup"])
def test_quick_study_end_to_end(tmp_path, study):
    out = tmp_path / "study"
    run = subprocess.run(
        [sys.executable, "-m", "reft", "demo", "--quick", "--study", study, "--out", str(out),
         f"base_cache={tmp_path / 'bases'}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == study and results["seeds"] == [0]
    reft_variants = [v for v in results["variants"] if v.startswith("reft_")]
    assert reft_variants and set(results["methods"]) == set(results["variants"])
    for variant in reft_variants:
        assert set(results["methods"][variant]) == {"top1", "voting"}
        curves = results["curves"]["0"][variant]
        assert {"dev_accuracy", "dev_by_tokens", "kl", "response_length"} <= set(curves)
        tokens = [point[0] for point in curves["dev_by_tokens"]]
        assert tokens == sorted(tokens) and tokens[-1] > 0
    report = (out / "report.md").read_text()
    assert f"--study {study}" in report and "| Variant |" in report
    figures = [f"{study}_training.png"] + (["warmup_dev_accuracy.png"] if study == "warmup" else [])
    for figure in figures:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({figure})" in report
