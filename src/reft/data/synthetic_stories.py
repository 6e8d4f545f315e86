"""Story families of the synthetic task: the wording of each operation in question, N-CoT and program.

A family is data, not code: one `OpTemplate` per operation it supports. Template fields:
``{v}`` value before the step, ``{x}`` the operand of add/sub/mul/div, ``{a}``/``{b}`` the count and
per-item amount of a *_product step, ``{p}`` their product, ``{r}`` the result, ``{prev}``/``{next}``
the people before/after the step (ages), plus the family's words (``{name}``, ``{item}``, ...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

NAMES = (
    "Mia", "Noah", "Emma", "Liam", "Ava", "Omar", "Zoe", "Ravi", "Lena", "Hugo", "Nina", "Kai",
    "Sara", "Theo", "Iris", "Jack", "Maya", "Leo", "Ruth", "Amir", "Chloe", "Ben", "Yuki", "Dan",
)  # fmt: skip


@dataclass(frozen=True)
class Step:
    """One operation on the running quantity: after = apply(op, before, operands)."""

    op: str
    operands: tuple[int, ...]
    before: int
    after: int


@dataclass(frozen=True)
class OpTemplate:
    sentence: str
    cot: tuple[str, ...]
    operand_names: tuple[str, ...]
    """Program variable names of the operands (a *_product step has two)."""


@dataclass(frozen=True)
class StoryFamily:
    name: str
    variable: str
    """Program variable of the running quantity (suffixed with the step index)."""
    start: str
    start_cot: str
    question: str
    distractor: str
    ops: dict[str, OpTemplate]
    words: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Word pools; one word of each is drawn per problem."""

    def pick_words(self, rng: random.Random, people: int) -> dict[str, str]:
        names = rng.sample(NAMES, k=min(people + 1, len(NAMES)))
        chosen = {key: rng.choice(pool) for key, pool in sorted(self.words.items())}
        chosen |= {f"person{i}": names[i % len(names)] for i in range(people)}
        return {"name": names[0], **chosen}

    def tell(
        self, step: Step, index: int, var: str, context: dict[str, str], literal: bool = False
    ) -> tuple[str, list[str], list[str], str]:
        """(question sentence, N-CoT lines, program lines, new variable) for one step.

        `literal`: the program assigns each result as the number worked out by hand
        (`money_1 = 4`) instead of the expression that computes it (`money_1 = money_0 // factor_1`).
        """
        template = self.ops[step.op]
        values = {"v": step.before, "r": step.after, **context}
        names = [f"{name}_{index}" for name in template.operand_names]
        new_var = f"{self.variable}_{index}"
        if len(step.operands) == 1:
            values["x"] = step.operands[0]
            symbol = {"add": "+", "sub": "-", "mul": "*", "div": "//"}[step.op]
            result = step.after if literal else f"{var} {symbol} {names[0]}"
            code = [f"{names[0]} = {step.operands[0]}", f"{new_var} = {result}"]
        else:
            values["a"], values["b"] = step.operands
            values["p"] = step.operands[0] * step.operands[1]
            symbol = "+" if step.op == "add_product" else "-"
            total = f"total_{index}"
            product = values["p"] if literal else f"{names[0]} * {names[1]}"
            result = step.after if literal else f"{var} {symbol} {total}"
            code = [
                f"{names[0]} = {step.operands[0]}",
                f"{names[1]} = {step.operands[1]}",
                f"{total} = {product}",
                f"{new_var} = {result}",
            ]
        lines = [line.format(**values) for line in template.cot]
        return template.sentence.format(**values), lines, code, new_var

    def compact_line(self, steps: list[Step], context: dict[str, str]) -> str:
        """The whole computation as one N-CoT line: the last step's result line, its value written
        as the expression of every earlier step ("It is (12 / 3) + 8 = 12 km away.").

        `context` is the last step's (words, prev, next), as `tell` received it.
        """
        expression = str(steps[0].before)
        for step in steps[:-1]:
            expression = f"({_step_expression(expression, step)})"
        last = steps[-1]
        values = {**context, "v": expression, "r": last.after}
        if len(last.operands) == 1:
            values["x"] = last.operands[0]
        else:
            values["a"], values["b"] = last.operands
            values["p"] = f"{last.operands[0]} * {last.operands[1]}"
        return self.ops[last.op].cot[-1].format(**values)


_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "add_product": "+", "sub_product": "-"}
"""How each operation is written in an N-CoT expression."""


def _step_expression(before: str, step: Step) -> str:
    """`before` followed by the step's operation ("12 - 3", "12 + 4 * 5")."""
    operands = " * ".join(str(operand) for operand in step.operands)
    return f"{before} {_SYMBOLS[step.op]} {operands}"


def _op(sentence: str, *cot: str, names: tuple[str, ...]) -> OpTemplate:
    return OpTemplate(sentence, tuple(cot), names)


SHOPPING = StoryFamily(
    name="shopping",
    variable="money",
    start="{name} has {v} dollars.",
    start_cot="{name} starts with {v} dollars.",
    question="How many dollars does {name} have now?",
    distractor="{other} has {y} dollars.",
    words={"thing": ("a book", "a hat", "lunch", "a game", "a ticket"), "goods": ("pens", "cups", "apples", "stamps")},
    ops={
        "add": _op("{name} earns {x} dollars.", "{name} has {v} + {x} = {r} dollars.", names=("earned",)),
        "sub": _op("{name} spends {x} dollars on {thing}.", "{name} has {v} - {x} = {r} dollars left.", names=("spent",)),
        "mul": _op("{name}'s money then grows to {x} times as much.", "{name} has {v} * {x} = {r} dollars.", names=("factor",)),
        "div": _op("{name} splits the money equally into {x} envelopes and keeps one envelope.", "One envelope holds {v} / {x} = {r} dollars.", names=("envelopes",)),
        "add_product": _op("{name} works {a} hours and earns {b} dollars per hour.", "{name} earns {a} * {b} = {p} dollars.", "{name} has {v} + {p} = {r} dollars.", names=("hours", "rate")),
        "sub_product": _op("{name} buys {a} {goods} that cost {b} dollars each.", "The {goods} cost {a} * {b} = {p} dollars.", "{name} has {v} - {p} = {r} dollars left.", names=("count", "price")),
    },
)  # fmt: skip

COLLECTION = StoryFamily(
    name="collection",
    variable="items",
    start="{name} has {v} {item}.",
    start_cot="{name} starts with {v} {item}.",
    question="How many {item} does {name} have now?",
    distractor="{other} has {y} {item}.",
    words={"item": ("marbles", "stickers", "cards", "shells", "coins", "stamps"), "friend": ("a friend", "a cousin", "a neighbour")},
    ops={
        "add": _op("{name} finds {x} more {item}.", "{name} has {v} + {x} = {r} {item}.", names=("found",)),
        "sub": _op("{name} gives {x} {item} to {friend}.", "{name} has {v} - {x} = {r} {item} left.", names=("given",)),
        "mul": _op("{name} trades them and ends up with {x} times as many {item}.", "{name} has {v} * {x} = {r} {item}.", names=("factor",)),
        "div": _op("{name} puts the {item} into {x} equal bags and keeps one bag.", "One bag holds {v} / {x} = {r} {item}.", names=("bags",)),
        "add_product": _op("{name} buys {a} packs with {b} {item} in each pack.", "The packs hold {a} * {b} = {p} {item}.", "{name} has {v} + {p} = {r} {item}.", names=("packs", "per_pack")),
        "sub_product": _op("{name} gives {a} friends {b} {item} each.", "{name} gives away {a} * {b} = {p} {item}.", "{name} has {v} - {p} = {r} {item} left.", names=("friends", "each")),
    },
)  # fmt: skip

AGES = StoryFamily(
    name="ages",
    variable="age",
    start="{person0} is {v} years old.",
    start_cot="{person0} is {v} years old.",
    question="How old is {last}?",
    distractor="{other} is {y} years old.",
    ops={
        "add": _op("{next} is {x} years older than {prev}.", "{next} is {v} + {x} = {r} years old.", names=("older",)),
        "sub": _op("{next} is {x} years younger than {prev}.", "{next} is {v} - {x} = {r} years old.", names=("younger",)),
        "mul": _op("{next} is {x} times as old as {prev}.", "{next} is {v} * {x} = {r} years old.", names=("factor",)),
        "div": _op("{prev} is {x} times as old as {next}.", "{next} is {v} / {x} = {r} years old.", names=("factor",)),
    },
)  # fmt: skip

TRAVEL = StoryFamily(
    name="travel",
    variable="distance",
    start="A {vehicle} is {v} km from the depot.",
    start_cot="The {vehicle} starts {v} km from the depot.",
    question="How many km is the {vehicle} from the depot now?",
    distractor="The {vehicle} has {y} seats.",
    words={"vehicle": ("bus", "truck", "van", "train", "boat")},
    ops={
        "add": _op("It moves {x} km farther away.", "It is {v} + {x} = {r} km away.", names=("farther",)),
        "sub": _op("It drives {x} km back toward the depot.", "It is {v} - {x} = {r} km away.", names=("back",)),
        "mul": _op("It keeps going until it is {x} times as far from the depot.", "It is {v} * {x} = {r} km away.", names=("factor",)),
        "div": _op("It turns back until its distance from the depot is divided by {x}.", "It is {v} / {x} = {r} km away.", names=("divisor",)),
        "add_product": _op("It drives away for {a} hours at {b} km per hour.", "It drives {a} * {b} = {p} km.", "It is {v} + {p} = {r} km away.", names=("hours", "speed")),
        "sub_product": _op("It drives back for {a} hours at {b} km per hour.", "It drives {a} * {b} = {p} km back.", "It is {v} - {p} = {r} km away.", names=("hours", "speed")),
    },
)  # fmt: skip

WORK = StoryFamily(
    name="work",
    variable="stock",
    start="A workshop has {v} {product} in stock.",
    start_cot="The workshop starts with {v} {product}.",
    question="How many {product} does the workshop have now?",
    distractor="The workshop has {y} workers.",
    words={"product": ("chairs", "toys", "lamps", "boxes", "shirts")},
    ops={
        "add": _op("The workers make {x} more {product}.", "The workshop has {v} + {x} = {r} {product}.", names=("made",)),
        "sub": _op("The workshop sells {x} {product}.", "The workshop has {v} - {x} = {r} {product} left.", names=("sold",)),
        "mul": _op("After a busy month the stock is {x} times as large.", "The workshop has {v} * {x} = {r} {product}.", names=("factor",)),
        "div": _op("The {product} are packed equally into {x} crates and only one crate stays.", "One crate holds {v} / {x} = {r} {product}.", names=("crates",)),
        "add_product": _op("{a} workers each make {b} more {product}.", "They make {a} * {b} = {p} {product}.", "The workshop has {v} + {p} = {r} {product}.", names=("workers", "each")),
        "sub_product": _op("{a} stores each buy {b} {product}.", "The stores buy {a} * {b} = {p} {product}.", "The workshop has {v} - {p} = {r} {product} left.", names=("stores", "each")),
    },
)  # fmt: skip

SAVINGS = StoryFamily(
    name="savings",
    variable="savings",
    start="{name} has {v} dollars in a piggy bank.",
    start_cot="The piggy bank starts with {v} dollars.",
    question="How many dollars are in the piggy bank now?",
    distractor="{name}'s sister has {y} dollars.",
    words={"lesson": ("piano", "swimming", "chess", "art")},
    ops={
        "add": _op("{name} puts in {x} dollars.", "The piggy bank has {v} + {x} = {r} dollars.", names=("deposit",)),
        "sub": _op("{name} takes out {x} dollars.", "The piggy bank has {v} - {x} = {r} dollars.", names=("withdrawn",)),
        "mul": _op("A grandparent makes the savings {x} times as large.", "The piggy bank has {v} * {x} = {r} dollars.", names=("factor",)),
        "div": _op("{name} shares the savings equally among {x} people and puts one share back.", "One share is {v} / {x} = {r} dollars.", names=("people",)),
        "add_product": _op("{name} saves {b} dollars a week for {a} weeks.", "{name} saves {a} * {b} = {p} dollars.", "The piggy bank has {v} + {p} = {r} dollars.", names=("weeks", "weekly")),
        "sub_product": _op("{name} pays {b} dollars a week for {a} weeks of {lesson} lessons.", "The lessons cost {a} * {b} = {p} dollars.", "The piggy bank has {v} - {p} = {r} dollars.", names=("weeks", "fee")),
    },
)  # fmt: skip

FAMILIES: dict[str, StoryFamily] = {
    family.name: family for family in (SHOPPING, COLLECTION, AGES, TRAVEL, WORK, SAVINGS)
}
