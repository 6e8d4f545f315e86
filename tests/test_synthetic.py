"""The synthetic task: deterministic, disjoint splits, exact N-CoT and P-CoT annotations, knobs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections import Counter

import pytest

from reft.answers.extract import extract_nl_answer
from reft.data.example import AnswerKind, CotKind
from reft.data.loaders import load_dataset, write_examples
from reft.data.options import parse_options
from reft.data.prompts import render_target
from reft.data.synthetic import (
    OPERATIONS,
    SynthConfig,
    computes_in_python,
    generate_examples,
    generate_problems,
    wrong_values,
)
from reft.data.synthetic_stories import FAMILIES, Step

CALCULATION = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _signature(problem) -> tuple:
    return (
        problem.family,
        problem.steps[0].before,
        tuple((s.op, s.operands) for s in problem.steps),
    )


def test_same_seed_same_items_other_seed_other_items():
    first = generate_problems(SynthConfig(seed=1), "train", 200)
    assert first == generate_problems(SynthConfig(seed=1), "train", 200)
    assert first != generate_problems(SynthConfig(seed=2), "train", 200)
    # A larger request extends a smaller one: the first items do not depend on n.
    assert generate_problems(SynthConfig(seed=1), "train", 250)[:200] == first


def test_splits_are_disjoint_in_computation_and_text():
    splits = {name: generate_problems(SynthConfig(), name, n) for name, n in
              [("train", 3000), ("dev", 500), ("test", 500)]}  # fmt: skip
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not {_signature(p) for p in splits[a]} & {_signature(p) for p in splits[b]}
        assert not {p.question for p in splits[a]} & {p.question for p in splits[b]}
    for problems in splits.values():
        assert len({_signature(p) for p in problems}) == len(problems)


def test_splits_do_not_depend_on_the_seed():
    """A computation is in the test split for every seed, so seeds never leak test items."""
    test_signatures = {_signature(p) for p in generate_problems(SynthConfig(seed=0), "test", 500)}
    train = generate_problems(SynthConfig(seed=7), "train", 3000)
    assert not test_signatures & {_signature(p) for p in train}


def test_nl_cot_calculations_are_exact_and_end_at_the_answer():
    for problem in generate_problems(SynthConfig(), "train", 500):
        calculations = CALCULATION.findall(problem.nl_cot)
        assert len(calculations) == sum(2 if "product" in s.op else 1 for s in problem.steps)
        for left, op, right, result in calculations:
            expected = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}
            assert expected[op](int(left), int(right)) == int(result), problem.nl_cot
            if op == "/":
                assert int(left) % int(right) == 0
        assert int(calculations[-1][3]) == problem.answer


def test_programs_execute_to_the_answer_in_a_separate_process():
    problems = generate_problems(SynthConfig(seed=3), "dev", 300)
    runner = (
        "import json, sys\n"
        "out = []\n"
        "for program in json.load(sys.stdin):\n"
        "    scope = {}\n"
        "    exec(program, scope)\n"
        "    out.append(scope['solution']())\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-I", "-c", runner],
        input=json.dumps([p.program for p in problems]),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(completed.stdout) == [p.answer for p in problems]


def test_program_format_matches_the_paper():
    problem = generate_problems(SynthConfig(), "test", 1)[0]
    assert problem.program.startswith(f'def solution():\n    """{problem.question}"""\n')
    assert problem.program.endswith("\n    result = " + problem.program.split("result = ")[-1])
    assert problem.program.rstrip().endswith("return result")


def test_examples_carry_the_requested_gold_solution():
    nl = generate_examples(SynthConfig(), "dev", 5, CotKind.nl)
    py = generate_examples(SynthConfig(), "dev", 5, CotKind.python)
    assert [e.id for e in nl] == [e.id for e in py] == [f"synth_dev_{i}" for i in range(5)]
    assert all(e.cot.startswith("def solution") for e in py)
    assert not any(e.cot.startswith("def solution") for e in nl)
    assert all(e.answer == str(int(e.answer)) for e in nl)


def test_knobs_bound_steps_values_operations_and_families():
    config = SynthConfig(min_steps=2, max_steps=3, max_value=60, max_start=20,
                         operations=["add", "mul"], families=["ages", "work"], distractor_prob=0.0)  # fmt: skip
    problems = generate_problems(config, "train", 300)
    assert {len(p.steps) for p in problems} <= {2, 3}
    assert {p.family for p in problems} == {"ages", "work"}
    for problem in problems:
        assert all(s.op in ("add", "mul") for s in problem.steps)
        assert all(0 <= s.after <= 60 for s in problem.steps)
        assert problem.steps[0].before <= 20


def test_distractors_follow_the_knob():
    def with_distractor(prob: float) -> int:
        problems = generate_problems(SynthConfig(distractor_prob=prob, seed=5), "train", 300)
        # A distractor adds a sentence that is neither the start, a step nor the question.
        return sum(
            p.question.count(".") + p.question.count("?") > len(p.steps) + 2 for p in problems
        )

    assert with_distractor(0.0) == 0
    assert with_distractor(1.0) == 300


def test_every_family_tells_every_operation_it_supports():
    for family in FAMILIES.values():
        config = SynthConfig(families=[family.name], operations=list(family.ops), min_steps=4)
        problems = generate_problems(config, "train", 200)
        assert {s.op for p in problems for s in p.steps} == set(family.ops)
        assert set(family.ops) <= set(OPERATIONS)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"min_steps": 3, "max_steps": 2}, "min_steps"),
        ({"operations": ["pow"]}, "unknown"),
        ({"families": ["pirates"]}, "unknown"),
        ({"distractor_prob": 1.5}, "distractor_prob"),
        ({"max_factor": 1}, "max_factor"),
        ({"min_steps": 1, "max_steps": 2, "step_weights": [1]}, "step_weights"),
        ({"min_steps": 1, "max_steps": 2, "step_weights": [0, 0]}, "step_weights"),
        ({"split_shares": [80, 10]}, "split_shares"),
        ({"split_shares": [80, 10, 20]}, "split_shares"),
        ({"choices": 1}, "choices must be 0"),
        ({"choices": 6}, "choices must be 0"),
        ({"choices": -2}, "choices must be 0"),
    ],
)
def test_invalid_knobs_are_rejected(knobs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**knobs)


def test_too_few_distinct_problems_is_an_error():
    config = SynthConfig(min_steps=1, max_steps=1, max_start=2, max_operand=1, operations=["add"],
                         families=["ages"])  # fmt: skip
    with pytest.raises(ValueError, match="too few different problems"):
        generate_problems(config, "train", 50)


def test_compact_annotations_hold_the_whole_computation_on_one_true_line():
    """compact_prob=1: every problem with two or more calculations gets one result line whose
    expression evaluates to the answer; compact_prob=0 draws exactly the items it drew before."""
    knobs = {"seed": 4, "min_steps": 1, "max_steps": 3, "distractor_prob": 0.0}
    plain = generate_problems(SynthConfig(**knobs), "train", 300)
    assert generate_problems(SynthConfig(**knobs, compact_prob=0.0), "train", 300) == plain
    compact = generate_problems(SynthConfig(**knobs, compact_prob=1.0), "train", 300)
    several = 0
    for problem in compact:
        lines = problem.nl_cot.splitlines()
        calculations = sum(len(step.operands) for step in problem.steps)
        if calculations < 2:  # one calculation: nothing to compact
            assert len(lines) == 2
            continue
        several += 1
        assert len(lines) == 2, problem.nl_cot
        left, right = lines[1].split(" = ")
        expression = left[left.index(next(c for c in left if c.isdigit() or c == "(")) :]
        assert eval(expression.replace("/", "//")) == problem.answer, lines[1]
        assert right.split()[0] == str(problem.answer)
    assert several > 100


def test_literal_programs_assign_hand_worked_numbers_and_change_nothing_else():
    """literal_prob=1: no gold program computes anything, each still returns the answer, and the
    questions and N-CoT gold are those drawn without the knob; literal_prob=0 draws exactly the
    items it drew before the knob existed."""
    knobs = {"seed": 5, "min_steps": 1, "max_steps": 3, "distractor_prob": 0.3}
    plain = generate_problems(SynthConfig(**knobs), "train", 200)
    assert all(computes_in_python(problem.program) for problem in plain)
    assert generate_problems(SynthConfig(**knobs, literal_prob=0.0), "train", 200) == plain
    literal = generate_problems(SynthConfig(**knobs, literal_prob=1.0), "train", 200)
    assert [p.question for p in literal] == [p.question for p in plain]
    assert [p.nl_cot for p in literal] == [p.nl_cot for p in plain]
    for problem in literal:
        assert not computes_in_python(problem.program), problem.program
        namespace: dict = {}
        exec(problem.program, namespace)  # our own gold program, not model output
        assert namespace["solution"]() == problem.answer


def test_literal_prob_writes_about_that_share_of_programs_by_hand():
    problems = generate_problems(SynthConfig(seed=2, literal_prob=0.5), "train", 400)
    by_hand = sum(not computes_in_python(problem.program) for problem in problems)
    assert 160 <= by_hand <= 240  # 200 +- 4 binomial standard deviations


def test_compact_prob_is_checked():
    with pytest.raises(ValueError, match="compact_prob"):
        SynthConfig(compact_prob=1.5)
    with pytest.raises(ValueError, match="literal_prob"):
        SynthConfig(literal_prob=-0.1)


# The demo's target task: small enough that one-step problems are scarce (about 1,200 signatures).
SCARCE = {"families": ["shopping", "travel", "work"], "min_steps": 1, "max_steps": 2,
          "max_start": 20, "max_operand": 9, "max_factor": 4, "max_value": 99,
          "operations": ["add", "sub", "mul", "div"], "distractor_prob": 0.0}  # fmt: skip
SIZES = {"train": 1000, "dev": 500, "test": 1000}


def _shares(problems, key) -> dict:
    counts: dict = {}
    for value in (v for problem in problems for v in key(problem)):
        counts[value] = counts.get(value, 0) + 1
    total = sum(counts.values())
    return {value: count / total for value, count in counts.items()}


def _chi_square(a: dict, n_a: int, b: dict, n_b: int) -> float:
    """Two-sample chi-square statistic of two category distributions (shares, sizes)."""
    statistic = 0.0
    for value in set(a) | set(b):
        pooled = (a.get(value, 0) * n_a + b.get(value, 0) * n_b) / (n_a + n_b)
        for share, n in ((a.get(value, 0), n_a), (b.get(value, 0), n_b)):
            statistic += n * (share - pooled) ** 2 / pooled
    return statistic


@pytest.mark.parametrize("seed", [0, 1])
def test_step_weights_draw_every_split_from_one_distribution(seed):
    config = SynthConfig(seed=seed, **SCARCE, step_weights=[1, 3], split_shares=[40, 20, 40])
    splits = {name: generate_problems(config, name, n) for name, n in SIZES.items()}
    for name, problems in splits.items():
        one_step = sum(len(p.steps) == 1 for p in problems) / len(problems)
        # Within 3.5 binomial standard errors of the weights' 25%.
        assert abs(one_step - 0.25) < 3.5 * (0.25 * 0.75 / len(problems)) ** 0.5, (name, one_step)
    operations = {
        name: _shares(ps, lambda p: [s.op for s in p.steps]) for name, ps in splits.items()
    }
    steps = {name: sum(len(p.steps) for p in ps) for name, ps in splits.items()}
    for other in ("dev", "test"):  # 3 degrees of freedom: 16.3 is the 0.1% critical value
        assert (
            _chi_square(operations["train"], steps["train"], operations[other], steps[other]) < 16.3
        )


def test_without_step_weights_a_small_split_runs_out_of_short_problems():
    """The old draw (kept for existing corpora): the test split's 10% hash share holds ~120 distinct
    one-step problems, so a 1,000-item test split is mostly two-step while train is not."""
    splits = {name: generate_problems(SynthConfig(**SCARCE), name, n) for name, n in SIZES.items()}
    one_step = {name: sum(len(p.steps) == 1 for p in ps) / len(ps) for name, ps in splits.items()}
    assert one_step["test"] < 0.15 < 0.35 < one_step["train"]


def test_split_shares_keep_splits_disjoint_and_sized_by_share():
    config = SynthConfig(**SCARCE, step_weights=[1, 3], split_shares=[40, 20, 40])
    splits = {name: generate_problems(config, name, n) for name, n in SIZES.items()}
    signatures = {name: {_signature(p) for p in ps} for name, ps in splits.items()}
    assert not signatures["train"] & signatures["dev"]
    assert (
        not signatures["train"] & signatures["test"] and not signatures["dev"] & signatures["test"]
    )
    assert generate_problems(config, "train", 1000) == splits["train"]


def test_a_split_that_runs_out_of_one_step_count_is_an_error():
    config = SynthConfig(**SCARCE, step_weights=[1, 0])  # one-step only: ~120 in the test share
    with pytest.raises(ValueError, match="test split ran out of distinct 1-step problems"):
        generate_problems(config, "test", 500)


# ---- the multiple-choice form (choices) ----------------------------------------------------

DEFAULT_TRAIN_SHA256 = "38ea378f524528f2437f21fb4d3ee8be86f96472d15572fe219d692e3273a162"
"""sha256 of the first 100 default train items (ReFT JSON) as generated before `choices` existed."""


def test_choices_zero_gives_the_items_generated_before_the_knob_existed():
    examples = generate_examples(SynthConfig(choices=0), "train", 100)
    document = json.dumps([example.to_reft_json() for example in examples])
    assert hashlib.sha256(document.encode()).hexdigest() == DEFAULT_TRAIN_SHA256


@pytest.mark.parametrize("choices", [2, 3, 4, 5])
def test_choices_append_distinct_options_one_of_them_the_answer(choices):
    plain = generate_problems(SynthConfig(seed=3), "dev", 200)
    options = generate_problems(SynthConfig(seed=3, choices=choices), "dev", 200)
    for problem, chosen in zip(plain, options, strict=True):
        # The same problem and solution: the options come from a stream of their own.
        question, line = chosen.question.rsplit("\n", 1)
        assert (question, chosen.nl_cot, chosen.steps) == (
            problem.question, problem.nl_cot, problem.steps,
        )  # fmt: skip
        assert line.startswith("a ) ") and " , b ) " in line, "MathQA's option line"
        values = list(parse_options(chosen.question).values())
        assert values == list(chosen.options) and len(values) == choices
        assert len(set(values)) == choices and min(values) >= 0
        assert values.count(problem.answer) == 1
        assert chosen.options["abcde".index(chosen.answer_letter)] == problem.answer
    positions = Counter(problem.answer_letter for problem in options)
    assert set(positions) == set("abcde"[:choices]), "the answer's letter varies"
    assert max(positions.values()) < 200 * (1 / choices + 0.15)


def test_wrong_options_are_slips_in_the_last_step():
    """The other operation, the value before the step, then an operand one more / one less."""
    assert wrong_values((Step("sub", (6,), 33, 27),)) == [39, 33, 26, 28]
    assert wrong_values((Step("mul", (2,), 144, 288),)) == [72, 144, 432]  # x1 is no slip
    assert wrong_values((Step("div", (3,), 15, 5),)) == [45, 15]  # 15 / 4, 15 / 2: not whole
    assert wrong_values((Step("div", (3,), 12, 4),)) == [36, 12, 3, 6]
    assert wrong_values((Step("add_product", (4, 5), 80, 100),)) == [60, 80, 105, 95]
    assert wrong_values((Step("sub", (1,), 1, 0),)) == [2, 1]  # 1 - 2 < 0, 1 - 0 = 1 twice


def test_choice_examples_name_the_letter_and_load_back_as_multiple_choice(tmp_path):
    examples = generate_examples(SynthConfig(choices=4), "train", 50)
    for example in examples:
        assert example.answer_kind is AnswerKind.multiple_choice and example.source == "synth-mc"
        assert example.id.startswith("synth-mc_train_") and example.answer in "abcd"
        target = render_target(example, CotKind.nl)
        assert target.endswith(f"\nTherefore, the answer is: {example.answer}")
        for strict in (True, False):
            assert extract_nl_answer(target, AnswerKind.multiple_choice, strict=strict) == (
                example.answer
            )
    # Named like the numeric task's files, it is still read as multiple choice (by its ids).
    path = write_examples(tmp_path / "synth_train.json", examples)
    assert load_dataset(path) == examples


def test_choices_refuse_pcot():
    with pytest.raises(ValueError, match="needs cot=nl"):
        generate_examples(SynthConfig(choices=3), "train", 2, CotKind.python)
