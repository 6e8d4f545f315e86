"""`reft demo`'s generalisation table and pass@K: the shifted split, the greedy eval stages, and the
report rebuilt from hand-written finished seed directories (no model is trained)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reft.cli import main
from reft.config import config_to_dict, load_config
from reft.data.synthetic import SynthConfig, generate_problems
from reft.demo.config import DemoConfig
from reft.demo.report import (
    QUICK_NOTE,
    build_results,
    generalisation_table,
    k_curves_table,
    paper_table,
    results_table,
    write_report,
)
from reft.demo.run import write_task
from reft.demo.stages import METHODS, plan_stages

K = 8
TEST = {"warmup": (0.30, 0.40), **{m: (0.50, 0.60) for m in METHODS}}
"""Greedy test top-1 of each method on seeds 0 and 1."""
TRAIN = {"warmup": (0.45, 0.55), **{m: (0.70, 0.80) for m in METHODS}}
"""Greedy top-1 on the method's own first training questions, seeds 0 and 1."""
SHIFTED = {"warmup": (0.10, 0.10), **{m: (0.20, 0.40) for m in METHODS}}
"""Greedy top-1 on the shifted split, seeds 0 and 1."""


def demo_config(quick: bool = False, overrides: tuple[str, ...] = ()) -> DemoConfig:
    return load_config(DemoConfig, DemoConfig(quick=quick).recipe_files(), list(overrides))


CURVE_KS = [1, 2, 4, K]
GAINS = {"voting": (0.0, 0.02, 0.04, 0.05), "rerank": (0.0, 0.04, 0.08, 0.1),
         "pass": (0.0, 0.1, 0.2, 0.3)}  # fmt: skip
"""Each curve's accuracy above greedy top-1 at k = 1, 2, 4, K (the K point is the headline)."""


def _write_eval(eval_dir: Path, metrics: dict[str, float], curves: dict | None = None) -> None:
    eval_dir.mkdir(parents=True)
    document = {"metrics": {"questions": 10, **metrics}} | ({"curves": curves} if curves else {})
    (eval_dir / "results.json").write_text(json.dumps(document))


def _finished_demo(out_dir: Path, seeds: tuple[int, ...] = (0, 1), curves: bool = False) -> None:
    """Seed directories as a finished demo leaves them: the eval results and the done markers (with
    `curves`, the sampled evals also hold accuracy-against-K curves, as `reft eval` now writes)."""
    for index, seed in enumerate(seeds):
        seed_dir = out_dir / f"seed_{seed}"
        for method in ("warmup", *METHODS):
            top1 = TEST[method][index]
            ranked = {} if method == "warmup" else {
                f"voting@{K}": top1 + 0.05, f"rerank@{K}": top1 + 0.1, f"pass@{K}": top1 + 0.3
            }  # fmt: skip
            method_curves = {"k": CURVE_KS} | {
                name: [top1 + gain for gain in gains] for name, gains in GAINS.items()
            }  # fmt: skip
            _write_eval(seed_dir / "eval" / method, {"top1": top1, **ranked},
                        method_curves if curves and method != "warmup" else None)  # fmt: skip
            _write_eval(seed_dir / "eval_train" / method, {"top1": TRAIN[method][index]})
            _write_eval(seed_dir / "eval_shifted" / method, {"top1": SHIFTED[method][index]})
            (seed_dir / f"{method}.done.json").write_text(json.dumps({"record": {"seconds": 60}}))


def test_shifted_split_has_one_more_step_than_training_and_is_kept(tmp_path):
    sizes = ("task.train_size=20", "task.dev_size=5", "task.test_size=5", "task.shifted_size=12")
    config = demo_config(overrides=sizes)
    data_dir = write_task(config, tmp_path / "data")
    shifted = json.loads((data_dir / "shifted.json").read_text())
    assert len(shifted) == 12
    knobs = {f.name: getattr(config.task, f.name) for f in dataclasses.fields(SynthConfig)}
    longer = config.task.max_steps + config.task.shifted_steps
    expected = generate_problems(
        SynthConfig(**{**knobs, "min_steps": longer, "max_steps": longer, "step_weights": []}),
        "test",
        12,
    )
    assert [p.question for p in expected] == [item["question"] for item in shifted]
    assert all(len(p.steps) == config.task.max_steps + 1 for p in expected)
    test = {item["question"] for item in json.loads((data_dir / "test.json").read_text())}
    assert not test & {item["question"] for item in shifted}  # unseen questions
    (data_dir / "shifted.json").write_text("[]\n")  # an existing file is kept, not regenerated
    write_task(config, data_dir)
    assert (data_dir / "shifted.json").read_text() == "[]\n"


def test_generalisation_evals_are_greedy_reft_eval_commands(tmp_path):
    from reft.cli import build_parser
    from reft.config import config_from_args
    from reft.evaluate.config import EvalConfig

    config = demo_config()
    seed_dir = tmp_path / "seed_0"
    stages = {s.name: s for s in plan_stages(config, 0, seed_dir, tmp_path / "data")}
    assert len({s.out_dir for s in stages.values()}) == len(stages)  # no two share a done marker
    for method in ("warmup", *METHODS):
        test_model = stages[f"eval_{method}"].settings["model"]
        for name, folder, dataset, limit in (
            (f"evaltrain_{method}", "eval_train", "train.json", config.task.train_eval_size),
            (f"evalshift_{method}", "eval_shifted", "shifted.json", 0),
        ):
            stage = stages[name]
            resolved = config_from_args(EvalConfig, build_parser().parse_args(stage.argv))
            assert stage.argv[0] == "eval" and not stage.trains
            assert stage.needs == (method,)  # greedy: no reward model to wait for
            assert (resolved.k, resolved.rerank, resolved.limit) == (0, None, limit)
            assert Path(resolved.dataset).name == dataset
            assert resolved.model == test_model  # the checkpoint its test eval uses
            assert resolved.out_dir == str(seed_dir / folder / method) == str(stage.out_dir)
            assert resolved.seed == 0 and resolved.cot is config.cot


def test_build_results_generalisation_and_pass_at_k(tmp_path):
    _finished_demo(tmp_path)
    results = build_results(config_to_dict(demo_config()), [0, 1], tmp_path, K)
    json.dumps(results, allow_nan=False)  # results.json stays plain JSON
    reft = results["generalisation"]["reft"]
    assert reft == pytest.approx({"train": 0.75, "test": 0.55, "shifted": 0.30, "gap": 0.20})
    spread = results["generalisation_std"]["reft"]
    assert spread == pytest.approx({"train": 0.0707107, "test": 0.0707107, "shifted": 0.1414214,
                                    "gap": 0.0}, abs=1e-6)  # fmt: skip
    per_seed = results["generalisation_per_seed"]
    assert per_seed["1"]["reft"]["shifted"] == 0.40
    assert per_seed["0"]["warmup"]["gap"] == pytest.approx(0.15)
    assert results["methods"]["reft"]["pass"] == pytest.approx(0.85)
    assert results["per_seed"]["0"]["sft"]["pass"] == pytest.approx(0.80)
    assert set(results["methods"]["warmup"]) == {"top1"}  # greedy only: no pass@K


def test_report_tables_show_pass_at_k_and_generalisation(tmp_path):
    _finished_demo(tmp_path)
    results = build_results(config_to_dict(demo_config()), [0, 1], tmp_path, K)
    main = results_table(results).splitlines()
    assert (
        main[0] == "| Method | Top-1 | Voting@8 | Rerank@8 | Pass@8 | Budget (s, incl. warm-up) |"
    )
    assert main[1] == "|---|---|---|---|---|---|"
    assert main[2] == "| SFT warm-up | 35.0 ± 7.1 | – | – | – | 60 |"
    assert main[4] == "| ReFT | 55.0 ± 7.1 | 60.0 ± 7.1 | 65.0 ± 7.1 | 85.0 ± 7.1 | 120 |"
    table = generalisation_table(results).splitlines()
    assert table[0].startswith("| Method | Own training questions | Test | Shifted split |")
    assert table[2] == "| SFT warm-up | 50.0 ± 7.1 | 35.0 ± 7.1 | 10.0 ± 0.0 | 15.0 ± 0.0 |"
    assert table[4] == "| ReFT | 75.0 ± 7.1 | 55.0 ± 7.1 | 30.0 ± 14.1 | 20.0 ± 0.0 |"
    report = write_report(results, tmp_path, [], "reft demo --seeds 0,1").read_text()
    assert "\n".join(main) in report and "\n".join(table) in report
    task = results["config"]["task"]
    longer, more = task["max_steps"] + task["shifted_steps"], task["shifted_steps"]
    assert f"with {longer} operations each, {more} more than any training question" in report


def test_a_quick_report_says_first_that_its_accuracies_are_not_meaningful(tmp_path):
    """`reft demo --quick` is what many run first: its report opens by saying it is a smoke run and
    pointing to the full command and the README's table; a full run's report says nothing of it."""
    _finished_demo(tmp_path, seeds=(0,))
    config = demo_config(quick=True, overrides=("quick=true",))  # as `reft demo --quick` loads it
    quick = build_results(config_to_dict(config), [0], tmp_path, K)
    head = write_report(quick, tmp_path, [], "reft demo --quick").read_text().splitlines()[:4]
    assert head[2] == QUICK_NOTE
    assert "smoke run" in head[2] and "not meaningful" in head[2]
    assert "`reft demo --seeds 0,1,2`" in head[2] and "README.md" in head[2]
    full = build_results(config_to_dict(demo_config()), [0], tmp_path, K)
    assert "smoke run" not in write_report(full, tmp_path, [], "reft demo").read_text()


def test_report_of_a_demo_without_generalisation_evals(tmp_path):
    """A directory from before the greedy evals existed still rebuilds, with "–" in their columns."""
    _finished_demo(tmp_path, seeds=(0,))
    for folder in ("eval_train", "eval_shifted"):
        for method in ("warmup", *METHODS):
            (tmp_path / "seed_0" / folder / method / "results.json").unlink()
    results = build_results(config_to_dict(demo_config()), [0], tmp_path, K)
    assert results["generalisation"]["reft"] == {"test": 0.50}
    assert generalisation_table(results).splitlines()[4] == "| ReFT | – | 50.0 | – | – |"


def test_accuracy_bars_plot_four_columns(tmp_path):
    from reft.demo.plots import plot_accuracy_bars

    _finished_demo(tmp_path)
    results = build_results(config_to_dict(demo_config()), [0, 1], tmp_path, K)
    path = plot_accuracy_bars(results, tmp_path / "accuracy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_build_results_averages_the_k_curves_over_seeds(tmp_path):
    _finished_demo(tmp_path, curves=True)
    results = build_results(config_to_dict(demo_config()), [0, 1], tmp_path, K)
    json.dumps(results, allow_nan=False)
    curves = results["k_curves"]
    assert list(curves) == list(METHODS), "the greedy warm-up eval has no curves"
    reft = curves["reft"]
    assert reft["k"] == CURVE_KS
    assert reft["voting"] == pytest.approx([0.55, 0.57, 0.59, 0.60])
    assert reft["rerank"] == pytest.approx([0.55, 0.59, 0.63, 0.65])
    assert reft["pass"] == pytest.approx([0.55, 0.65, 0.75, 0.85])
    assert reft["pass"][-1] == pytest.approx(results["methods"]["reft"]["pass"]), "K: the headline"


def test_k_curves_of_a_method_missing_from_one_seed_are_left_out(tmp_path):
    _finished_demo(tmp_path, curves=True)
    path = tmp_path / "seed_1" / "eval" / "sft" / "results.json"
    document = json.loads(path.read_text())
    del document["curves"]
    path.write_text(json.dumps(document))
    results = build_results(config_to_dict(demo_config()), [0, 1], tmp_path, K)
    assert "sft" not in results["k_curves"] and "reft" in results["k_curves"]


def test_report_and_figure_of_accuracy_against_k(tmp_path):
    from reft.demo.plots import plot_k_curves

    _finished_demo(tmp_path, seeds=(0,), curves=True)
    results = build_results(config_to_dict(demo_config()), [0], tmp_path, K)
    table = k_curves_table(results).splitlines()
    columns = [f"{name}@{k}" for name in ("Voting", "Rerank", "Pass") for k in CURVE_KS]
    assert table[0] == "| Method | " + " | ".join(columns) + " |"
    assert table[1] == "|---" * (len(columns) + 1) + "|"
    assert len(table) == 2 + len(METHODS)
    reft = next(line for line in table if line.startswith("| ReFT |"))
    assert reft == ("| ReFT | 50.0 | 52.0 | 54.0 | 55.0 | 50.0 | 54.0 | 58.0 | 60.0 | 50.0 | 60.0 "
                    "| 70.0 | 80.0 |")  # fmt: skip
    figure = plot_k_curves(results, tmp_path / "accuracy_vs_k.png")
    assert figure == tmp_path / "accuracy_vs_k.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = write_report(results, tmp_path, [figure], "reft demo").read_text()
    assert "## Accuracy against K" in report and "\n".join(table) in report
    assert "![accuracy_vs_k](accuracy_vs_k.png)" in report


def test_results_without_k_curves_give_no_table_and_no_figure(tmp_path):
    """Evals from before the curves, and a results.json from before `k_curves`, still report."""
    from reft.demo.plots import plot_k_curves

    _finished_demo(tmp_path, seeds=(0,))
    results = build_results(config_to_dict(demo_config()), [0], tmp_path, K)
    assert results["k_curves"] == {}
    del results["k_curves"]
    assert k_curves_table(results) == ""
    assert plot_k_curves(results, tmp_path / "accuracy_vs_k.png") is None
    assert not (tmp_path / "accuracy_vs_k.png").exists()
    report = write_report(results, tmp_path, [], "reft demo").read_text()
    assert "Accuracy against K" not in report and "## Generalisation" in report


def test_table_reads_k_from_the_curves_of_an_eval_that_drew_more_samples():
    from reft.demo.report import at_k

    curves = {"k": [1, 2, 4, 8, 16, 32], "voting": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
              "pass": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9]}  # fmt: skip
    assert at_k({"voting@8": 0.25}, curves, "voting", 8) == 0.25  # the headline when it drew 8
    assert at_k({"voting@32": 0.6}, curves, "voting", 8) == 0.4
    assert at_k({"pass@32": 0.9}, curves, "pass", 8) == 0.7
    with pytest.raises(KeyError, match="rerank@8"):
        at_k({"voting@32": 0.6}, curves, "rerank", 8)


def test_reranker_test_quality_is_read_from_each_test_eval(tmp_path):
    from reft.demo.report import seed_reranker_test

    quality = {"auc": 0.7, "auc_within": 0.55, "pairs_within": 12}
    (tmp_path / "eval" / "reft").mkdir(parents=True)
    (tmp_path / "eval" / "reft" / "results.json").write_text(
        json.dumps({"metrics": {"top1": 0.3}, "reranker": quality})
    )
    (tmp_path / "eval" / "sft").mkdir(parents=True)  # an eval without a reranker: left out
    (tmp_path / "eval" / "sft" / "results.json").write_text(json.dumps({"metrics": {"top1": 0.2}}))
    assert seed_reranker_test(tmp_path) == {"reft": quality}


def _pcot_reft_stage(seed_dir: Path) -> None:
    """A P-CoT ReFT stage's logged train steps (step 1 paying the program workers' start-up) and
    error shares in every test eval."""
    parts = {"time_rollout": 0.3, "time_scoring": 0.06, "time_forward": 0.04, "time_update": 0.6}
    steps = [{"step": 1, "split": "train", "epoch": 0.1, **parts, "time_scoring": 0.5,
              "time_grade": 0.45, "programs_per_s": 35.0}]  # fmt: skip
    steps += [{"step": s, "split": "train", "epoch": 0.1 * s, **parts, "time_grade": 0.05,
               "programs_per_s": 320.0} for s in (2, 4, 6)]  # fmt: skip
    (seed_dir / "reft").mkdir(parents=True, exist_ok=True)
    (seed_dir / "reft" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    for method in ("warmup", *METHODS):
        path = seed_dir / "eval" / method / "results.json"
        document = json.loads(path.read_text())
        kinds = {"timeout": 0.1, "memory": 0.0, "exception": 0.2, "no_result": 0.0,
                 "crashed": 0.0, "forbidden": 0.05 if method == "reft" else 0.0}  # fmt: skip
        document["metrics"] |= {f"top1_error_{kind}": share for kind, share in kinds.items()}
        path.write_text(json.dumps(document))


def test_pcot_report_shows_grading_cost_and_program_errors(tmp_path):
    _finished_demo(tmp_path, seeds=(0,))
    _pcot_reft_stage(tmp_path / "seed_0")
    config = config_to_dict(demo_config(overrides=("cot=python",)))
    results = build_results(config, [0], tmp_path, K)
    json.dumps(results, allow_nan=False)
    reft = results["budgets"]["0"]["reft"]
    assert reft["grade_seconds"] == 0.05 and reft["programs_per_s"] == 320.0, "medians: not step 1"
    assert reft["grade_share"] == pytest.approx(0.05 / 1.0)
    assert "programs_per_s" not in results["budgets"]["0"]["sft"]
    assert results["error_shares"]["reft"]["forbidden"] == 0.05
    report = write_report(results, tmp_path, [], "reft demo --cot python").read_text()
    budget_rows = [line for line in report.splitlines() if line.startswith("| 0 |")]
    assert "| Grading s/step | Programs/s | Grading % of step |" in report
    assert budget_rows[2].endswith("| 0.050 | 320 | 5.0 |"), "ReFT"
    assert budget_rows[1].endswith("| – | – | – |"), "SFT grades no programs"
    assert "## Program errors" in report
    assert "| ReFT | 10.0 | 0.0 | 20.0 | 0.0 | 0.0 | 5.0 |" in report


def test_nl_report_has_no_grading_columns_or_program_errors(tmp_path):
    _finished_demo(tmp_path, seeds=(0,))
    results = build_results(config_to_dict(demo_config()), [0], tmp_path, K)
    report = write_report(results, tmp_path, [], "reft demo").read_text()
    assert "| Seed | Method | Steps | Epochs | Own seconds | Seconds incl. warm-up |\n" in report
    assert "Programs/s" not in report and "Program errors" not in report


def _demo_results(out_dir: Path, cot: str, seeds: tuple[int, ...]) -> dict:
    _finished_demo(out_dir, seeds=seeds)
    config = config_to_dict(demo_config(overrides=(f"cot={cot}",)))
    return build_results(config, list(seeds), out_dir, K)


def test_paper_table_has_an_ncot_and_a_pcot_column_group_per_method(tmp_path):
    nl = _demo_results(tmp_path / "nl", "nl", (0, 1))
    python = _demo_results(tmp_path / "python", "python", (0,))
    lines = paper_table([nl, python]).splitlines()
    assert lines[0] == (
        "| Method | N-CoT Top-1 | N-CoT Voting@8 | N-CoT Rerank@8 | N-CoT Pass@8 "
        "| P-CoT Top-1 | P-CoT Voting@8 | P-CoT Rerank@8 | P-CoT Pass@8 |"
    )
    assert lines[1].count("|---") == 9
    # N-CoT: two seeds (0.50, 0.60) -> mean ± std; P-CoT: one seed, no spread.
    assert lines[3] == ("| SFT | 55.0 ± 7.1 | 60.0 ± 7.1 | 65.0 ± 7.1 | 85.0 ± 7.1 "
                        "| 50.0 | 55.0 | 60.0 | 80.0 |")  # fmt: skip
    assert lines[2] == "| SFT warm-up | 35.0 ± 7.1 | – | – | – | 30.0 | – | – | – |"
    with pytest.raises(ValueError, match="one results file per chain-of-thought kind"):
        paper_table([nl, nl])


def test_demo_table_command_prints_the_table_and_names_a_file_that_is_not_demo_results(
    tmp_path, capsys
):
    paths = []
    for cot in ("nl", "python"):
        results = _demo_results(tmp_path / cot, cot, (0,))
        paths.append(tmp_path / f"{cot}.json")
        paths[-1].write_text(json.dumps(results))
    assert main(["demo-table", str(paths[0]), str(tmp_path / "python")]) == 2  # no results.json
    (tmp_path / "python" / "results.json").write_text(paths[1].read_text())
    assert main(["demo-table", str(paths[0]), str(tmp_path / "python")]) == 0
    assert "| ReFT | 50.0 | 55.0 | 60.0 | 80.0 | 50.0 |" in capsys.readouterr().out
    bad = tmp_path / "eval.json"
    bad.write_text(json.dumps({"metrics": {"top1": 0.5}}))
    assert main(["demo-table", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    for name, content in (("cut.json", b'{"methods": {'), ("latin1.json", b'{"k": "\xe9"}')):
        (tmp_path / name).write_bytes(content)
        assert main(["demo-table", str(tmp_path / name)]) == 2
        assert f"{tmp_path / name}: not" in capsys.readouterr().err  # JSON / UTF-8, file named


def test_cot_python_layers_the_pcot_recipe_under_quick():
    files = DemoConfig(cot="python", quick=True).recipe_files()
    assert [path.name for path in files] == ["default.yaml", "python.yaml", "quick.yaml"]
    config = load_config(DemoConfig, files, [])
    assert config.cot == "python" and config.task.distractor_prob > 0
    assert config.task.train_size == 300, "quick's sizes win"
    assert [path.name for path in DemoConfig().recipe_files()] == ["default.yaml"]
