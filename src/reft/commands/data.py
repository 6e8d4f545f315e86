"""`reft data`: generate the synthetic task and inspect datasets.

reft data synth --n 20000 --split train --out train.json [--cot nl|python] [--seed S] [knob=value ...]
reft data stats --dataset FILE|synth:SPLIT[:N] [--tokenizer PATH] [--cot nl|python]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from reft.config import ConfigError, add_config_arguments, config_from_args, save_config
from reft.data.errors import DataError
from reft.data.example import CotKind
from reft.data.loaders import detect_cot_kind, load_dataset, write_examples
from reft.data.prompts import render_generation_prompt, render_target, split_training_text
from reft.data.synthetic import SPLITS, SynthConfig, generate_examples
from reft.files import check_output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="generate the synthetic task; inspect datasets")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = commands.add_parser(
        "synth", help="write the built-in synthetic task in the ReFT JSON format"
    )
    synth.add_argument("--n", type=int, required=True, help="number of problems")
    synth.add_argument("--split", choices=SPLITS, required=True)
    synth.add_argument("--out", type=Path, required=True, help="output .json file")
    synth.add_argument(
        "--cot",
        type=CotKind,
        choices=[kind.value for kind in CotKind],
        default=CotKind.nl,
        help="gold solution written to answer_cot (default: nl)",
    )
    add_config_arguments(synth, SynthConfig)
    synth.set_defaults(handler=run_synth)

    stats = commands.add_parser(
        "stats", help="counts, answer kinds, lengths and a rendered example"
    )
    stats.add_argument(
        "--dataset", required=True, help="a .json/.jsonl file, synth:SPLIT[:N] or hf:..."
    )
    stats.add_argument("--tokenizer", default=None, help="tokenizer name or path for token lengths")
    stats.add_argument(
        "--cot",
        type=CotKind,
        choices=[kind.value for kind in CotKind],
        default=None,
        help="render as this CoT kind (default: the kind the data carries)",
    )
    stats.add_argument(
        "--strip-calculator", action="store_true", help="remove GSM8K <<a*b=c>> calculator marks"
    )
    stats.set_defaults(handler=run_stats)


def run_synth(args: argparse.Namespace) -> int:
    config = config_from_args(SynthConfig, args)
    check_output_file(args.out, "--out")
    try:
        examples = generate_examples(config, args.split, args.n, args.cot)
    except ValueError as error:  # knobs that allow fewer distinct problems than asked for
        raise ConfigError(str(error)) from None
    write_examples(args.out, examples)
    config_path = save_config(config, args.out.with_name(args.out.stem + ".config.yaml"))
    print(
        f"wrote {len(examples)} {args.split} problems ({args.cot.value}) to {args.out}; knobs in {config_path}"
    )
    return 0


def run_stats(args: argparse.Namespace) -> int:
    examples = load_dataset(args.dataset, strip_calculator=args.strip_calculator)
    carried = detect_cot_kind(examples)
    if args.cot and carried and args.cot is not carried:
        raise DataError(
            f"the gold solutions are {carried.value}; --cot {args.cot.value} cannot render them",
            path=args.dataset, field="answer_cot",
        )  # fmt: skip
    cot = args.cot or carried or CotKind.nl
    print(f"dataset      {args.dataset}")
    print(f"items        {len(examples)}")
    print(f"sources      {dict(Counter(example.source for example in examples))}")
    print(f"answer kinds {dict(Counter(example.answer_kind.value for example in examples))}")
    with_cot = sum(bool(example.cot) for example in examples)
    print(f"gold CoT     {with_cot} items, kind: {carried.value if carried else 'none'}")
    if args.tokenizer:
        _print_token_lengths(examples, args.tokenizer, cot)
    else:
        words = [len(example.question.split()) for example in examples]
        print(f"question words {_percentiles(words)}  (pass --tokenizer for token lengths)")
    example = examples[0]
    print(f"\nexample {example.id} (answer {example.answer!r}):")
    print("---- prompt " + "-" * 40)
    print(render_generation_prompt(example.question, cot), end="")
    if example.cot:
        prompt, target = split_training_text(example.question, render_target(example, cot), cot)
        after = (
            "the prompt above"
            if prompt == render_generation_prompt(example.question, cot)
            else "the plain prompt"
        )
        print(f"\n---- SFT target (after {after}) " + "-" * 12)
        print(target)
    return 0


def _print_token_lengths(examples: list, tokenizer_name: str, cot: CotKind) -> None:
    """Percentiles of the sampling prompt's tokens and, for gold solutions, of the tokens SFT
    trains on (cut as `reft.data.tokenize.tokenize_sft` cuts them)."""
    from transformers import AutoTokenizer

    from reft.data.tokenize import IGNORE_INDEX, OverlengthPolicy, encode_prompt, tokenize_sft

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    prompts = [
        len(encode_prompt(tokenizer, render_generation_prompt(example.question, cot)))
        for example in examples
    ]
    print(f"prompt tokens  {_percentiles(prompts)}  (as sampling sees it)")
    trained = [example for example in examples if example.cot]
    if trained:
        features, _ = tokenize_sft(trained, tokenizer, cot, 2**31, OverlengthPolicy.skip)
        targets = [sum(label != IGNORE_INDEX for label in f.labels) for f in features]
        print(f"target tokens  {_percentiles(targets)}  (EOS included)")
        print(f"total tokens   {_percentiles([len(f.input_ids) for f in features])}")


def _percentiles(values: list[int]) -> str:
    ordered = sorted(values)

    def at(fraction: float) -> int:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return f"min {ordered[0]}  p50 {at(0.5)}  p90 {at(0.9)}  p99 {at(0.99)}  max {ordered[-1]}"
