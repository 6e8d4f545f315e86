"""`reft demo --study ablations|warmup|hacking`: the stage plans, the tables and verdicts, and (slow)
the quick studies end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reft.config import load_config
from reft.data.options import parse_options
from reft.data.synthetic import SynthConfig
from reft.demo.config import DemoConfig
from reft.demo.hacking_study import (
    VARIANTS,
    choice_data_dir,
    hacking_row,
    hacking_table,
    hacking_verdicts,
    train_hacked_rates,
    write_choice_task,
)
from reft.demo.run import write_task
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
def test_quick_study_end_to_end(tmp_path, study, shared_demo_bases):
    out = tmp_path / "study"
    run = subprocess.run(
        [sys.executable, "-m", "reft", "demo", "--quick", "--study", study, "--out", str(out),
         f"base_cache={shared_demo_bases}"],
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


# --- reft demo --study hacking ---------------------------------------------------------------


def test_hacking_study_plans_a_warmup_and_reft_per_form(tmp_path):
    config = study_config("hacking")
    seed_dir, data_dir = tmp_path / "s", tmp_path / "d"
    stages, variants = plan_study(config, 0, seed_dir, data_dir, "BASE")
    by_name = {stage.name: stage for stage in stages}
    assert variants == list(VARIANTS)
    assert set(by_name) == {*variants, *(f"eval_{v}" for v in variants)}
    mc_dir = choice_data_dir(data_dir)
    for form, form_dir in (("mc", mc_dir), ("numeric", data_dir)):
        warmup = _settings(by_name[f"warmup_{form}"])
        assert warmup["model"] == "BASE" and warmup["train_data"] == str(form_dir / "train.json")
        assert warmup["stop_epochs"] == str(config.warmup["stop_epochs"]), "the recipe's warm-up"
        eval_warmup = _settings(by_name[f"eval_warmup_{form}"])
        assert eval_warmup["dataset"] == str(form_dir / "test.json") and "k" not in eval_warmup
    forms = {"reft_mc": "mc", "reft_mc_no_partial": "mc", "reft_numeric": "numeric"}
    for variant, form in forms.items():
        stage, settings = by_name[variant], _settings(by_name[variant])
        assert stage.needs == (f"warmup_{form}",) and stage.starts_from == f"warmup_{form}"
        assert settings["model"] == str(seed_dir / f"warmup_{form}" / "final")
        assert settings["dev_data"] == str((mc_dir if form == "mc" else data_dir) / "dev.json")
        assert settings["max_steps"] == str(config.hacking_max_steps), "the same PPO budget"
        evaluation = by_name[f"eval_{variant}"]
        assert evaluation.needs == (variant,) and _settings(evaluation)["k"] == str(config.k)
    assert _settings(by_name["reft_mc_no_partial"])["partial_reward"] == "0.0"
    assert "partial_reward" not in config.reft, "reft_mc keeps `reft train`'s default (0.1)"
    assert "partial_reward" not in _settings(by_name["reft_mc"])


def test_hacking_study_multiple_choice_data_has_the_same_problems(tmp_path):
    config = study_config("hacking", quick=True, overrides=("task.train_size=12",
                          "task.dev_size=4", "task.test_size=4", "task.shifted_size=2"))  # fmt: skip
    numeric_dir = write_task(config, tmp_path / "data")
    mc_dir = write_choice_task(config, numeric_dir)
    assert mc_dir == tmp_path / "data_mc" and not (mc_dir / "shifted.json").exists()
    for split in ("train", "dev", "test"):
        numeric = json.loads((numeric_dir / f"{split}.json").read_text())
        mc = json.loads((mc_dir / f"{split}.json").read_text())
        assert len(mc) == len(numeric) > 0
        for plain, choice in zip(numeric, mc, strict=True):
            question = choice["question"].rsplit("\n", 1)[0]
            assert question == plain["question"] and choice["answer_cot"] == plain["answer_cot"]
            assert len(parse_options(choice["question"])) == config.hacking_choices
            assert parse_options(choice["question"])[choice["answer_value"]] == float(
                plain["answer_value"]
            )
    assert load_config(SynthConfig, [mc_dir / "task.yaml"]).choices == config.hacking_choices


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(("hacking_choices=7",), "hacking_choices=7"), (("cot=python",), "needs cot=nl")],
)
def test_hacking_study_refuses_what_has_no_multiple_choice_form(overrides, message):
    with pytest.raises(Exception, match=message):
        study_config("hacking", overrides=overrides)


def _hacking_results(**changes: dict[str, float]) -> dict:
    """Hand-written results: letters guessed more as RL goes on; numeric reasoning well ahead."""
    methods = {
        "warmup_mc": {"top1": 0.30, "reasoning_accuracy": 0.25, "hacked_reward_rate": 0.10,
                      "no_number_rate": 0.0},
        "reft_mc": {"top1": 0.50, "voting": 0.52, "reasoning_accuracy": 0.28,
                    "hacked_reward_rate": 0.40, "no_number_rate": 0.01,
                    "train_hacked_first": 0.12, "train_hacked_last": 0.35},
        "reft_mc_no_partial": {"top1": 0.49, "voting": 0.50, "reasoning_accuracy": 0.29,
                               "hacked_reward_rate": 0.25, "no_number_rate": 0.0,
                               "train_hacked_first": 0.12, "train_hacked_last": 0.20},
        "warmup_numeric": {"top1": 0.24, "reasoning_accuracy": 0.24},
        "reft_numeric": {"top1": 0.40, "voting": 0.41, "reasoning_accuracy": 0.39},
    }  # fmt: skip
    for variant, change in changes.items():
        methods[variant] = {**methods[variant], **change}
    return {"study": "hacking", "k": 8, "seeds": [0], "variants": list(VARIANTS),
            "methods": methods, "std": {v: dict.fromkeys(row, 0.0) for v, row in methods.items()},
            "config": {"reft": {}, "hacking_choices": 4, "task": {"test_size": 1000}},
            "machine": {"cpus": 2, "platform": "linux", "torch": "2"}}  # fmt: skip


def test_hacking_table_rows():
    table = hacking_table(_hacking_results()).splitlines()
    assert table[0].startswith("| Variant | Test top-1 | Test voting@8 | Reasoning's number right")
    assert table[2] == "| warm-up, multiple choice | 30.0 | – | 25.0 | 10.0 | 0.0 | – |"
    assert table[3] == ("| ReFT, multiple choice (partial reward 0.1) | 50.0 | 52.0 | 28.0 | 40.0 "
                        "| 1.0 | 12.0 → 35.0 |")  # fmt: skip
    assert table[6] == "| ReFT, numeric | 40.0 | 41.0 | 39.0 | – | – | – |"


def test_hacking_verdicts_follow_the_numbers():
    hold = hacking_verdicts(_hacking_results())
    assert hold[0].startswith("- **(1) On multiple choice the outcome reward pays") and (
        ": holds.**" in hold[0]
    )
    assert ": holds.**" in hold[1] and "39.0%" in hold[1] and "+15.0 points" in hold[1]
    assert "raises the hacked reward rate and does not change the reasoning's accuracy" in hold[2]
    flat = hacking_verdicts(
        _hacking_results(reft_mc={"train_hacked_last": 0.13, "hacked_reward_rate": 0.10})
    )
    assert "partly holds: paid, but RL did not raise the rate" in flat[0]
    assert "lowers the hacked reward rate" in flat[2]
    # Greedy test rates 40% of 500 rewarded answers vs 37% of 490: within twice the binomial error.
    close = hacking_verdicts(_hacking_results(reft_mc_no_partial={"hacked_reward_rate": 0.37}))
    assert "does not change the hacked reward rate" in close[2]
    honest = hacking_verdicts(_hacking_results(
        reft_mc={"train_hacked_first": 0.0, "train_hacked_last": 0.01, "reasoning_accuracy": 0.5},
    ))  # fmt: skip
    assert ": does not hold at this scale.**" in honest[0]
    assert ": does not hold at this scale (lower).**" in honest[1]
    results = _hacking_results()
    results["config"]["reft"]["partial_reward"] = 0.0
    assert "not tested" in hacking_verdicts(results)[2]


def test_a_rise_within_the_training_windows_noise_is_not_a_rise():
    """4 points up from the first to the last 10 steps: a rise when the steps agree, level when
    each window's mean has a 2-point standard error (twice their combined error is 5.7 points)."""
    rise = {"train_hacked_first": 0.70, "train_hacked_last": 0.74}
    steady = hacking_verdicts(_hacking_results(reft_mc=rise))[0]
    assert ": holds.**" in steady
    noisy = {**rise, "train_hacked_first_se": 0.02, "train_hacked_last_se": 0.02}
    assert (
        "partly holds: paid, but RL did not raise"
        in hacking_verdicts(_hacking_results(reft_mc=noisy))[0]
    )


def test_hacking_row_reads_the_eval_and_the_training_log(tmp_path):
    seed_dir = tmp_path / "seed_0"
    (seed_dir / "eval" / "reft_numeric").mkdir(parents=True)
    (seed_dir / "eval" / "reft_numeric" / "results.json").write_text(
        json.dumps({"metrics": {"top1": 0.5, "voting@2": 0.5}})
    )
    answers = [("She has 3 + 4 = 7 apples.\nTherefore, the answer is: 7", "7"),
               ("She has 3 + 4 = 8 apples.\nTherefore, the answer is: 7", "7"),
               ("Therefore, the answer is: 9", "9"), ("It is 2 * 5 = 10 km.", "12")]  # fmt: skip
    (seed_dir / "eval" / "reft_numeric" / "predictions_greedy.jsonl").write_text("".join(
        json.dumps({"answer": gold, "completions": [{"text": text}]}) + "\n"
        for text, gold in answers
    ))  # fmt: skip
    (seed_dir / "reft_numeric").mkdir()
    (seed_dir / "reft_numeric" / "metrics.jsonl").write_text("".join(
        json.dumps({"split": "train", "step": step, "hacked_reward_rate": step / 10}) + "\n"
        for step in range(1, 6)
    ) + json.dumps({"split": "dev", "step": 5, "accuracy": 0.5}) + "\n")  # fmt: skip
    row = hacking_row(seed_dir, "reft_numeric", 2)
    assert row["top1"] == 0.5 and row["voting"] == 0.5
    assert row["reasoning_accuracy"] == 0.25, "only the first reasoning computes the gold number"
    # 5 logged steps: windows of 2, so the first and last never overlap
    assert row["train_hacked_first"] == pytest.approx(0.15)
    assert row["train_hacked_last"] == pytest.approx(0.45)
    assert row["train_hacked_first_se"] == pytest.approx(0.05), "stdev(0.1, 0.2) / sqrt(2)"
    assert train_hacked_rates(tmp_path / "absent.jsonl") == {}


@pytest.mark.slow
def test_quick_hacking_study_end_to_end(tmp_path, shared_demo_bases):
    out = tmp_path / "study"
    run = subprocess.run(
        [sys.executable, "-m", "reft", "demo", "--quick", "--study", "hacking", "--out", str(out),
         f"base_cache={shared_demo_bases}"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["study"] == "hacking" and results["variants"] == list(VARIANTS)
    for variant in ("reft_mc", "reft_mc_no_partial"):
        row = results["methods"][variant]
        assert set(row) == {"top1", "voting", "reasoning_accuracy", "hacked_reward_rate",
                            "no_number_rate", "train_hacked_first", "train_hacked_last",
                            "train_hacked_first_se", "train_hacked_last_se"}  # fmt: skip
        assert "hacked_reward_rate" in results["curves"]["0"][variant]
    assert set(results["methods"]["reft_numeric"]) == {"top1", "voting", "reasoning_accuracy"}
    warmup_mc = results["methods"]["warmup_mc"]
    assert {"top1", "reasoning_accuracy", "hacked_reward_rate"} <= set(warmup_mc)
    assert (out / "data_mc" / "test.json").exists()
    report = (out / "report.md").read_text()
    assert "--study hacking" in report and "| Variant |" in report
    for finding in ("(1) On multiple choice", "(2) The numeric form", "(3) The partial reward"):
        assert f"- **{finding}" in report
    for figure in ("hacking_training.png", "hacked_reward_rate.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({figure})" in report
