"""The built-in synthetic task: procedural arithmetic word problems with exact N-CoT and P-CoT solutions.

Every problem follows one running quantity (money, a collection, an age, a distance, a stock, savings)
through 1-4 operations. Each operation is one sentence of the question, one or two lines of the N-CoT
solution, and one or two assignments of the P-CoT program, so both annotations are exact by
construction (the tests execute every program).

Knobs (`SynthConfig`) set the difficulty: the number of steps, the operand and value ranges, which
operations appear, and how often an irrelevant "distractor" sentence with a number is inserted.

Splits are disjoint by construction: a problem's split is a hash of its arithmetic signature (family,
start value, operations and operands), not of its wording, so the test split never holds the same
computation as a training problem told with other names. The same seed and knobs give the same items.

Every split is drawn from one distribution when `step_weights` is set: each item's number of steps is
drawn from those weights first, then problems with exactly that many steps are drawn until one is
new and hashes into the split. Without it a step count is drawn per attempt, so a split whose hash
share runs out of distinct short problems silently holds longer ones (the old behaviour, kept for
existing corpora). `split_shares` sizes the hash shares: set them in proportion to the split sizes
asked for, so every split uses the same fraction of its distinct problems.

Multiple-choice form (`choices` = 2-5): every question ends with a MathQA-style option line
("\na ) 14 , b ) 21 , c ) 7 , d ) 28", reft.data.options); one option is the answer, the others are
the problem's own wrong results (the last step with the other operation, the value before the last
step, the last step with an operand off by one), and the gold answer is the option's letter. The
gold N-CoT is unchanged: it computes the number, and the rendered target then names the letter
("...\nTherefore, the answer is: b"). This is where a wrong chain of thought can still land on the
right letter (the paper's MathQA finding; reft.answers.hacking measures it). The options are drawn
from their own random stream, seeded by the item, so every other draw (and item) stays as without.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace

from reft.data.example import SYNTH_CHOICE_SOURCE, AnswerKind, CotKind, Example
from reft.data.options import OPTION_LETTERS, append_options
from reft.data.synthetic_stories import FAMILIES, NAMES, Step, StoryFamily

SPLITS = ("train", "dev", "test")
"""The splits a problem can hash into, in the order of `SynthConfig.split_shares`."""
DEFAULT_SPLIT_SIZES = {"train": 20000, "dev": 500, "test": 1000}
"""Sizes used by the `synth:SPLIT` dataset spec when no N is given."""
OPERATIONS = ("add", "sub", "mul", "div", "add_product", "sub_product")
MAX_ATTEMPTS_PER_ITEM = 200
OTHER_OPERATION = {
    "add": "sub", "sub": "add", "mul": "div", "div": "mul",
    "add_product": "sub_product", "sub_product": "add_product",
}  # fmt: skip
"""The operation a wrong option applies at the last step instead of the right one."""
PCOT_CHOICES_ERROR = (
    "choices (the multiple-choice form) needs cot=nl: a P-CoT program returns the number, not the "
    "option letter"
)


@dataclass
class SynthConfig:
    """Difficulty knobs of the synthetic task."""

    seed: int = 0
    """Generation seed; with the same knobs the same seed gives the same items."""
    min_steps: int = 1
    """Fewest operations per problem."""
    max_steps: int = 4
    """Most operations per problem (a *_product operation holds two calculations)."""
    max_start: int = 50
    """The starting quantity is drawn from 1..max_start."""
    max_operand: int = 12
    """Operands of add/sub and the per-item amount of the *_product operations: 1..max_operand."""
    max_factor: int = 4
    """Factors and divisors of mul/div, and counts of *_product operations: 2..max_factor."""
    max_value: int = 300
    """Every intermediate result stays within 0..max_value."""
    operations: list[str] = field(default_factory=lambda: list(OPERATIONS))
    """Operations that may appear: add, sub, mul, div, add_product, sub_product."""
    families: list[str] = field(default_factory=lambda: sorted(FAMILIES))
    """Story families that may appear."""
    distractor_prob: float = 0.3
    """Probability of inserting one irrelevant sentence with a number."""
    step_weights: list[float] = field(default_factory=list)
    """Relative weight of each step count min_steps..max_steps, drawn per item before its problem,
    so every split holds the same distribution of steps (empty: a step count per attempt, which lets
    a split whose share of short problems runs out hold longer ones instead)."""
    split_shares: list[int] = field(default_factory=lambda: [80, 10, 10])
    """Percent of all distinct problems (by arithmetic signature) that hash into train, dev and test;
    they sum to 100. In proportion to the split sizes, every split uses the same fraction of its
    problems, so none runs out of a kind of problem before the others."""
    compact_prob: float = 0.0
    """Probability that a problem with two or more calculations gets a compact gold N-CoT: the whole
    computation on one line ("It is (12 / 3) + 8 = 12 km away.") instead of one line per result.
    Annotators differ like this in real data; the compact form is much harder for a small model."""
    literal_prob: float = 0.0
    """Probability that a problem's gold program is written by an annotator who works each result out
    by hand and assigns the number (`money_1 = 4`) instead of the expression that computes it
    (`money_1 = money_0 // envelopes_1`): the program's arithmetic then happens in the model, as in an
    N-CoT, and only the answer tells the two styles apart. Drawn from the item's own random stream,
    so the questions, the N-CoT gold and the other items do not change with it."""
    choices: int = 0
    """Multiple-choice form: 0 keeps the numeric task; 2-5 appends that many options to every
    question ("a ) 14 , b ) 21 , ...", as MathQA writes them), one of them the answer and the others
    wrong results of the same problem, and the gold answer becomes the option's letter. N-CoT only
    (a P-CoT program returns a number, not a letter)."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}"
            )
        unknown = set(self.operations) - set(OPERATIONS) or set(self.families) - set(FAMILIES)
        if unknown or not self.operations or not self.families:
            raise ValueError(
                f"operations must be a non-empty subset of {list(OPERATIONS)} and families of "
                f"{sorted(FAMILIES)}; unknown: {sorted(unknown)}"
            )
        if self.max_factor < 2 or self.max_operand < 1 or self.max_start < 1:
            raise ValueError("need max_factor >= 2, max_operand >= 1 and max_start >= 1")
        steps = self.max_steps - self.min_steps + 1
        if self.step_weights and (
            len(self.step_weights) != steps
            or min(self.step_weights) < 0
            or not any(self.step_weights)
        ):
            raise ValueError(
                f"step_weights needs {steps} non-negative weights (steps {self.min_steps}.."
                f"{self.max_steps}), not all zero; got {self.step_weights}"
            )
        if (
            len(self.split_shares) != len(SPLITS)
            or sum(self.split_shares) != 100
            or min(self.split_shares) < 0
        ):
            raise ValueError(
                f"split_shares needs {len(SPLITS)} non-negative percents ({', '.join(SPLITS)}) "
                f"summing to 100, got {self.split_shares}"
            )
        if self.choices != 0 and not 2 <= self.choices <= len(OPTION_LETTERS):
            raise ValueError(
                f"choices must be 0 (the numeric task) or 2..{len(OPTION_LETTERS)} options "
                f"(letters {', '.join(OPTION_LETTERS)}), got {self.choices}"
            )
        for name in ("distractor_prob", "compact_prob", "literal_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class SynthProblem:
    """A generated problem with both of its exact solutions."""

    id: str
    family: str
    question: str
    nl_cot: str
    """Natural-language steps, without the final-answer trigger (rendering appends it)."""
    program: str
    """`def solution():` program in the paper's P-CoT format; it returns `answer`."""
    answer: int
    steps: tuple[Step, ...]
    options: tuple[int, ...] = ()
    """The option values in letter order (the question ends with them); empty: the numeric task."""

    @property
    def answer_letter(self) -> str:
        """The letter of the option that is the answer (multiple-choice form only)."""
        return OPTION_LETTERS[self.options.index(self.answer)]

    def to_example(self, cot: CotKind) -> Example:
        solution = self.program if cot is CotKind.python else self.nl_cot
        if not self.options:
            return Example(
                self.id, self.question, str(self.answer), AnswerKind.numeric, "synth", solution
            )
        if cot is CotKind.python:
            raise ValueError(PCOT_CHOICES_ERROR)
        return Example(
            self.id, self.question, self.answer_letter, AnswerKind.multiple_choice,
            SYNTH_CHOICE_SOURCE, solution,
        )  # fmt: skip


def generate_problems(config: SynthConfig, split: str, n: int) -> list[SynthProblem]:
    """`n` distinct problems of `split` ("train", "dev" or "test"), deterministic in (config, split)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    rng = random.Random(f"reft-synth:{config.seed}:{split}")
    problems: list[SynthProblem] = []
    seen: set[str] = set()
    prefix = SYNTH_CHOICE_SOURCE if config.choices else "synth"
    wanted, attempts = None, 0  # the current item's step count (step_weights only)
    for _ in range(max(n, 1) * MAX_ATTEMPTS_PER_ITEM):
        if len(problems) == n:
            return problems
        if config.step_weights and wanted is None:
            wanted, attempts = _draw_step_count(rng, config), 0
        attempts += 1
        if wanted is not None and attempts > MAX_ATTEMPTS_PER_ITEM:
            raise ValueError(
                f"the {split} split ran out of distinct {wanted}-step problems after {len(problems)} "
                "items: lower that step count's weight, raise the split's share (split_shares) or "
                "widen the knobs (max_start, max_operand)"
            )
        family = FAMILIES[rng.choice(config.families)]
        ops = [op for op in config.operations if op in family.ops]
        steps = _sample_steps(rng, config, ops, wanted)
        if steps is None:
            continue
        signature = "|".join(
            [family.name, str(steps[0].before), *(f"{s.op}{s.operands}" for s in steps)]
        )
        if signature in seen or _split_of(signature, config.split_shares) != split:
            continue
        seen.add(signature)
        problem = _render(rng, config, family, steps, f"{prefix}_{split}_{len(problems)}")
        problems.append(with_choices(problem, config) if config.choices else problem)
        wanted = None
    if len(problems) < n:
        raise ValueError(
            f"only {len(problems)} distinct {split} problems found for n={n}: the knobs allow too "
            "few different problems (raise max_steps, max_operand or max_start)"
        )
    return problems


def generate_examples(
    config: SynthConfig, split: str, n: int, cot: CotKind = CotKind.nl
) -> list[Example]:
    """`generate_problems` as `Example` records carrying the `cot` kind of gold solution."""
    if config.choices and cot is CotKind.python:
        raise ValueError(PCOT_CHOICES_ERROR)
    return [problem.to_example(cot) for problem in generate_problems(config, split, n)]


def _split_of(signature: str, shares: list[int]) -> str:
    """The split whose share of the 100 hash buckets holds sha256(signature) mod 100."""
    bucket = int(hashlib.sha256(signature.encode()).hexdigest(), 16) % 100
    bound = 0
    for name, share in zip(SPLITS, shares, strict=True):
        bound += share
        if bucket < bound:
            return name
    raise AssertionError("split_shares sum to 100")


def _draw_step_count(rng: random.Random, config: SynthConfig) -> int:
    counts = range(config.min_steps, config.max_steps + 1)
    return rng.choices(counts, weights=config.step_weights)[0]


def _sample_steps(
    rng: random.Random, config: SynthConfig, operations: list[str], count: int | None = None
) -> list[Step] | None:
    """A chain of `count` operations (None: min_steps..max_steps drawn here) keeping every value an
    integer in 0..max_value.

    Returns None when the drawn chain gets stuck (no operation feasible); the caller draws again.
    """
    if not operations:
        raise ValueError(
            f"no family in {config.families} supports the operations {config.operations}"
        )
    value = rng.randint(1, config.max_start)
    steps: list[Step] = []
    for _ in range(count or rng.randint(config.min_steps, config.max_steps)):
        choices = [op for op in operations if _operands(rng, config, op, value) is not None]
        if not choices:
            return None
        op = rng.choice(choices)
        operands = _operands(rng, config, op, value)
        steps.append(Step(op, operands, value, _apply(op, value, operands)))
        value = steps[-1].after
    return steps


def _operands(
    rng: random.Random, config: SynthConfig, op: str, value: int
) -> tuple[int, ...] | None:
    """Random operands for `op` that keep the result an integer in range, or None if impossible."""
    factor_max, operand_max, top = config.max_factor, config.max_operand, config.max_value
    if op == "add" and value + 1 <= top:
        return (rng.randint(1, min(operand_max, top - value)),)
    if op == "sub" and value >= 1:
        return (rng.randint(1, min(operand_max, value)),)
    if op == "mul" and value * 2 <= top and value >= 1:
        return (rng.randint(2, min(factor_max, top // value)),)
    if op == "div":
        divisors = [d for d in range(2, factor_max + 1) if value % d == 0 and value // d >= 1]
        return (rng.choice(divisors),) if divisors else None
    if op in ("add_product", "sub_product"):
        room = top - value if op == "add_product" else value
        pairs = [
            (count, each)
            for count in range(2, factor_max + 1)
            for each in range(1, operand_max + 1)
            if count * each <= room
        ]
        return rng.choice(pairs) if pairs else None
    return None


def _apply(op: str, value: int, operands: tuple[int, ...]) -> int:
    if op == "add":
        return value + operands[0]
    if op == "sub":
        return value - operands[0]
    if op == "mul":
        return value * operands[0]
    if op == "div":
        return value // operands[0]
    count, each = operands
    return value + count * each if op == "add_product" else value - count * each


def _render(
    rng: random.Random, config: SynthConfig, family: StoryFamily, steps: list[Step], item_id: str
) -> SynthProblem:
    """Tell the steps as a story: question sentences, N-CoT lines and program lines together."""
    words = family.pick_words(rng, people=len(steps) + 1)
    sentences = [family.start.format(v=steps[0].before, **words)]
    cot_lines = [family.start_cot.format(v=steps[0].before, **words)]
    var = f"{family.variable}_0"
    program = [f"{var} = {steps[0].before}"]
    literal = _by_hand(config, item_id)
    for index, step in enumerate(steps, start=1):
        context = {**words, "prev": words[f"person{index - 1}"], "next": words[f"person{index}"]}
        sentence, lines, code, var = family.tell(step, index, var, context, literal)
        sentences.append(sentence)
        cot_lines.extend(lines)
        program.extend(code)
    if rng.random() < config.distractor_prob:
        other = rng.choice([name for name in NAMES if name not in words.values()])
        distractor = family.distractor.format(
            other=other, y=rng.randint(2, config.max_start), **words
        )
        sentences.insert(rng.randint(1, len(sentences)), distractor)
    question = " ".join([*sentences, family.question.format(**words, last=context["next"])])
    # Drawn only when enabled, so compact_prob=0 leaves every other draw (and item) unchanged.
    if config.compact_prob > 0 and rng.random() < config.compact_prob:
        cot_lines = [cot_lines[0], family.compact_line(steps, context)]
    header = f'def solution():\n    """{question}"""\n'
    body = "".join(f"    {line}\n" for line in [*program, f"result = {var}", "return result"])
    return SynthProblem(
        id=item_id,
        family=family.name,
        question=question,
        nl_cot="\n".join(cot_lines),
        program=(header + body).rstrip("\n"),
        answer=steps[-1].after,
        steps=tuple(steps),
    )


def computes_in_python(program: str) -> bool:
    """Whether a program has Python do some arithmetic: an operator on the right of an assignment
    in its body. False for a gold program written by hand (`literal_prob`), whose assignments are
    all numbers and names."""
    body = program.split('"""')[-1]
    return any(op in line.split(" = ")[-1] for line in body.splitlines() for op in "+-*/")


def _by_hand(config: SynthConfig, item_id: str) -> bool:
    """Whether this item's gold program assigns hand-worked numbers (`config.literal_prob`)."""
    if config.literal_prob == 0:
        return False
    rng = random.Random(f"reft-synth-literal:{config.seed}:{item_id}")
    return rng.random() < config.literal_prob


def with_choices(problem: SynthProblem, config: SynthConfig) -> SynthProblem:
    """The problem with `config.choices` options appended to its question: the answer and wrong
    results (`wrong_values`), in an order drawn from the item's own random stream, so the main
    stream, and with it every item, is the same as without choices."""
    rng = random.Random(f"reft-synth-choices:{config.seed}:{problem.id}")
    plausible = wrong_values(problem.steps)
    rng.shuffle(plausible)
    values = [problem.answer, *plausible[: config.choices - 1]]
    values += _nearby_values(problem.answer, config.choices - len(values), exclude=values)
    rng.shuffle(values)
    question = append_options(problem.question, values)
    return replace(problem, question=question, options=tuple(values))


def wrong_values(steps: tuple[Step, ...]) -> list[int]:
    """Distinct non-negative integers a slip in the last step gives instead of its result: the other
    operation (add <-> sub, mul <-> div, add_product <-> sub_product), the value before the step, and
    the step with an operand (or a product's count) one more or one less."""
    last = steps[-1]
    op, before, operands = last.op, last.before, last.operands
    candidates = [_apply_if_whole(OTHER_OPERATION[op], before, operands), before]
    for delta in (1, -1):
        changed = (operands[0] + delta, *operands[1:])
        if min(changed) >= 1 and not (op in ("mul", "div") and changed[0] == 1):
            candidates.append(_apply_if_whole(op, before, changed))
    wrong: list[int] = []
    for value in candidates:
        if value is not None and value >= 0 and value != last.after and value not in wrong:
            wrong.append(value)
    return wrong


def _apply_if_whole(op: str, value: int, operands: tuple[int, ...]) -> int | None:
    """`_apply`, or None where a division would not come out whole."""
    if op == "div" and value % operands[0]:
        return None
    return _apply(op, value, operands)


def _nearby_values(answer: int, count: int, exclude: list[int]) -> list[int]:
    """`count` more wrong options when a problem's slips give too few: answer +1, -1, +2, -2, ...
    (never negative, never one of `exclude`)."""
    values: list[int] = []
    distance = 1
    while len(values) < count:
        for value in (answer + distance, answer - distance):
            if len(values) < count and value >= 0 and value not in exclude + values:
                values.append(value)
        distance += 1
    return values
