"""Generation and SFT throughput of the tiny-llama preset on this machine.

    python bench/bench_generation.py [--quick]
    python bench/bench_generation.py --demo-model runs/demo/seed_0/warmup/final --demo-data runs/demo/data

1. Greedy generation, tokens/s at batch sizes 1, 8, 32, 64 with a fixed number of new tokens per row
   (the EOS id given to every option is one the model never produces, so each option generates
   exactly batch x new_tokens tokens). Options side by side: transformers' `generate` with its
   dynamic cache (the baseline), under inference_mode, with a static cache, with a static cache +
   torch.compile; reft's engine (`reft.generation.engine.generate_ids`, default settings), also on a
   torch.compile'd model; then the baseline and reft's default at 2 threads.
2. The same at batch 64 for 32 / 128 / 256 new tokens.
3. Rollout-like sampling (temperature 1, top_k 0, top_p 1): 256 prompts in batches of 64, up to 256
   new tokens, rows ending at random lengths (a set of EOS ids that a random model samples ~1% of the
   time): tokens/s counts the tokens up to each row's EOS. And K samples per prompt: 8 prompts x 8.
4. SFT train tokens/s: forward + backward + AdamW step on a fixed batch of 16 x 256 tokens.
0. With --demo-model/--demo-data (only this section): the demo's own rollout, its warm-up on 256
   training prompts in one batch, greedy and sampled, `model.generate` against reft's engine.

Timings are the best of a few runs, interleaved across options so that load from other processes
on a shared machine hits all of them alike; the first call of each option is timed apart (for the
compiled options it includes compilation). Random weights are fine for speed: the cost of a step does
not depend on what the model says.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import transformers
from transformers import CompileConfig, GenerationConfig

from reft.data.collate import pad_prompts_left
from reft.data.prompts import render_prompt
from reft.data.synthetic import SynthConfig, generate_problems
from reft.data.tokenize import encode_prompt
from reft.generation.config import GenerationEngine, SamplingConfig
from reft.generation.engine import generate_ids, response_mask_from_ids
from reft.models.presets import build_tiny_model
from reft.models.tokenizer import train_tokenizer

PRESET = "tiny-llama"
BASELINE = "hf generate, dynamic cache (baseline)"
DEFAULT = "reft engine (default)"
Run = Callable[[], int]
"""One timed call; returns the number of tokens it generated."""
Make = Callable[[list[list[int]], int], Run]
"""(prompts, max new tokens) -> a Run."""


def setup() -> tuple[object, object, list[list[int]]]:
    """Tokenizer trained on synthetic problems, a random tiny-llama, and 256 tokenised prompts."""
    problems = generate_problems(SynthConfig(), "train", 400)
    texts = [render_prompt(p.question) + p.nl_cot for p in problems] + [p.program for p in problems]
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    model = build_tiny_model(PRESET, tokenizer, seed=0).eval()
    prompts = [encode_prompt(tokenizer, render_prompt(p.question)) for p in problems[:256]]
    return tokenizer, model, prompts


def hf_option(model, pad: int, eos: list[int], batch_size: int = 64, **settings) -> Make:
    """Plain `model.generate` on consecutive batches of prompts, greedy unless told otherwise."""

    def make(prompts: list[list[int]], new_tokens: int) -> Run:
        config = GenerationConfig(max_new_tokens=new_tokens, eos_token_id=eos, pad_token_id=pad)
        config.update(**{"do_sample": False, **settings})

        def run() -> int:
            made = 0
            for start in range(0, len(prompts), batch_size):
                batch = pad_prompts_left(prompts[start : start + batch_size], pad)
                output = model.generate(**batch, generation_config=config)
                response = output[:, batch["input_ids"].shape[1] :]
                made += int(response_mask_from_ids(response, eos)[0].sum())
            return made

        return run

    return make


def reft_option(model, pad: int, eos: list[int], **settings) -> Make:
    """reft's `generate_ids` with default settings (batches of 64 rows) unless told otherwise."""

    def make(prompts: list[list[int]], new_tokens: int) -> Run:
        config = SamplingConfig(max_new_tokens=new_tokens, **settings)

        def run() -> int:
            batch = generate_ids(model, prompts, config, eos_token_id=eos, pad_token_id=pad)
            return int(batch.response_mask.sum())

        return run

    return make


def inference_mode(make: Make) -> Make:
    def wrapped(prompts: list[list[int]], new_tokens: int) -> Run:
        run = make(prompts, new_tokens)

        def in_mode() -> int:
            with torch.inference_mode():
                return run()

        return in_mode

    return wrapped


def greedy_options(model, pad: int, quick: bool) -> list[tuple[str, int, Make]]:
    """(name, threads, make) of every greedy option; `never` is an id outside the vocabulary."""
    never = [model.config.vocab_size]
    compile_config = CompileConfig(fullgraph=False, mode="default")
    compile_config._compile_all_devices = True  # transformers compiles on GPUs only unless told
    options = [
        (BASELINE, 1, hf_option(model, pad, never)),
        (
            "hf generate, dynamic cache, inference_mode",
            1,
            inference_mode(hf_option(model, pad, never)),
        ),
        (
            "hf generate, static cache",
            1,
            hf_option(model, pad, never, cache_implementation="static"),
        ),
        (DEFAULT, 1, reft_option(model, pad, never)),
    ]
    if not quick:
        static_compiled = {"cache_implementation": "static", "compile_config": compile_config}
        options += [
            (
                "hf generate, static cache + torch.compile",
                1,
                hf_option(model, pad, never, **static_compiled),
            ),
            (
                "reft engine, torch.compile(model, dynamic=True)",
                1,
                reft_option(torch.compile(model, dynamic=True), pad, never),
            ),
        ]
    options += [
        (BASELINE, 2, hf_option(model, pad, never)),
        (DEFAULT, 2, reft_option(model, pad, never)),
    ]
    return options


def measure(
    options: list[tuple[str, int, Make]],
    cases: list[tuple[str, list[list[int]], int]],
    repeats: int,
) -> dict[tuple[str, int], dict[str, tuple[float, float] | str]]:
    """{(option, threads): {case: (best tokens/s, first-call seconds) or an error}}.

    For each case the options are warmed up once, then run `repeats` times in turn (interleaved).
    """
    results: dict[tuple[str, int], dict[str, tuple[float, float] | str]] = {
        (name, threads): {} for name, threads, _ in options
    }
    for label, prompts, new_tokens in cases:
        runs = {}
        for name, threads, make in options:
            torch.set_num_threads(threads)
            try:
                run = make(prompts, new_tokens)
                start = time.perf_counter()
                run()
                runs[(name, threads)] = (run, threads, time.perf_counter() - start)
            except Exception as error:  # a failing option is reported, not fatal (e.g. compile)
                results[(name, threads)][label] = f"failed: {type(error).__name__}: {error}"[:120]
        best = {key: 0.0 for key in runs}
        for _ in range(repeats):
            for key, (run, threads, _) in runs.items():
                torch.set_num_threads(threads)
                start = time.perf_counter()
                made = run()
                best[key] = max(best[key], made / (time.perf_counter() - start))
        for key, (_, _, first) in runs.items():
            results[key][label] = (best[key], first)
        print(f"  measured {label}", flush=True)
    torch.set_num_threads(1)
    return results


def print_table(title: str, results, labels: list[str], baseline: tuple[str, int]) -> None:
    """A markdown table: tokens/s and ratio to `baseline` per case, then first-call times."""
    print(f"\n{title}\n")
    print("| option | threads | " + " | ".join(labels) + " |")
    print("| --- | --- |" + " --- |" * len(labels))
    for (name, threads), row in results.items():
        cells = []
        for label in labels:
            value, base = row.get(label, "-"), results[baseline].get(label)
            if isinstance(value, str) or isinstance(base, str):
                cells.append(str(value))
            else:
                cells.append(f"{value[0]:,.0f} (x{value[0] / base[0]:.2f})")
        print(f"| {name} | {threads} | " + " | ".join(cells) + " |")
    for (name, _), row in results.items():
        if "compile" in name:
            firsts = ", ".join(f"{v[1]:.0f} s" for v in row.values() if not isinstance(v, str))
            print(f"\nfirst calls (with compilation) of '{name}': {firsts}")


def rollout_options(model, pad: int, eos: list[int]) -> list[tuple[str, int, Make]]:
    sampled = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    return [
        (BASELINE, 1, hf_option(model, pad, eos, **sampled)),
        (
            "reft generate_ids, engine=hf (length-sorted batches)",
            1,
            reft_option(model, pad, eos, do_sample=True, engine=GenerationEngine.hf),
        ),
        (DEFAULT, 1, reft_option(model, pad, eos, do_sample=True)),
    ]


def samples_options(model, pad: int, eos: list[int]) -> list[tuple[str, int, Make]]:
    settings = {"do_sample": True, "num_samples": 8}
    return [
        (
            "reft generate_ids, engine=hf",
            1,
            reft_option(model, pad, eos, engine=GenerationEngine.hf, **settings),
        ),
        (DEFAULT, 1, reft_option(model, pad, eos, **settings)),
    ]


def measure_sft(model, vocab_size: int, steps: int) -> None:
    """Train tokens/s: forward + backward + AdamW step on a fixed batch of 16 x 256 tokens."""
    ids = torch.randint(0, vocab_size, (16, 256), generator=torch.Generator().manual_seed(0))
    print("\nSFT step (forward + backward + AdamW), batch 16 x 256 tokens\n")
    print("| threads | seconds/step | tokens/s |")
    print("| --- | --- | --- |")
    model.train()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        _sft_step(model, ids, optimizer)
        best = float("inf")
        for _ in range(steps):
            start = time.perf_counter()
            _sft_step(model, ids, optimizer)
            best = min(best, time.perf_counter() - start)
        print(f"| {threads} | {best:.3f} | {ids.numel() / best:,.0f} |")
    model.eval()
    torch.set_num_threads(1)


def _sft_step(model, ids: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def bench_generation(model, tokenizer, prompts: list[list[int]], quick: bool) -> None:
    """Sections 1-3 of the module docstring, each printed as a markdown table."""
    new_tokens, repeats = (32, 1) if quick else (128, 3)
    pad, never = tokenizer.pad_token_id, [model.config.vocab_size]
    cases = [(f"batch {b}", prompts[:b], new_tokens) for b in (1, 8, 32, 64)]
    results = measure(greedy_options(model, pad, quick), cases, repeats)
    title = f"Greedy, {new_tokens} new tokens per row: tokens/s (x baseline at 1 thread)"
    print_table(title, results, [c[0] for c in cases], (BASELINE, 1))

    pair = [
        (BASELINE, 1, hf_option(model, pad, never)),
        (DEFAULT, 1, reft_option(model, pad, never)),
    ]
    cases = [(f"{t} tokens", prompts[:64], t) for t in ((32, 64) if quick else (32, 128, 256))]
    results = measure(pair, cases, repeats)
    title = "Greedy at batch 64 by response length: tokens/s"
    print_table(title, results, [c[0] for c in cases], (BASELINE, 1))

    eos = list(range(100, 100 + len(tokenizer) // 100))  # ~1% of a near-uniform distribution
    count, limit = (128, 64) if quick else (256, 256)
    cases = [(f"{count} prompts, <= {limit} tokens", prompts[:count], limit)]
    results = measure(rollout_options(model, pad, eos), cases, max(1, repeats - 1))
    title = "Rollout-like sampling, batches of 64, random lengths: tokens/s up to EOS"
    print_table(title, results, [cases[0][0]], (BASELINE, 1))

    cases = [("8 prompts x 8 samples", prompts[:8], new_tokens)]
    results = measure(samples_options(model, pad, never), cases, repeats)
    title = "K samples per prompt, 64 rows, sampled"
    print_table(title, results, [cases[0][0]], ("reft generate_ids, engine=hf", 1))


def bench_demo_rollout(model_dir: str, data_dir: str, repeats: int) -> None:
    """Section 0: the demo's rollout as `reft demo` samples it (its warm-up, 256 training prompts in
    one batch, <= 64 new tokens, the model's own EOS), greedy and sampled: plain `model.generate` on
    the batch in input order against reft's engine. Tokens/s counts tokens up to each row's EOS."""
    from reft.data.example import CotKind
    from reft.data.loaders import load_dataset
    from reft.models.load import load_causal_lm, load_tokenizer
    from reft.train.rollout import encode_prompts

    model = load_causal_lm(model_dir, dtype="float32", device="cpu").eval()
    tokenizer = load_tokenizer(model_dir)
    prompts = encode_prompts(load_dataset(f"{data_dir}/train.json")[:256], tokenizer, CotKind.nl)
    pad, eos = tokenizer.pad_token_id, [tokenizer.eos_token_id]
    sampled = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    for label, settings in (("greedy", {}), ("sampled, temperature 1", sampled)):
        options = [
            (BASELINE, 1, hf_option(model, pad, eos, batch_size=256, **settings)),
            (DEFAULT, 1, reft_option(model, pad, eos, batch_size=256, **settings)),
        ]
        case = f"256 prompts, <= 64 tokens, {label}"
        results = measure(options, [(case, prompts, 64)], repeats)
        print_table(f"The demo's rollout ({model_dir}): tokens/s", results, [case], (BASELINE, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat, no compile")
    parser.add_argument("--demo-model", help="section 0 only: the demo's warm-up checkpoint")
    parser.add_argument("--demo-data", help="section 0 only: the demo's data directory")
    args = parser.parse_args()
    quick = args.quick
    if args.demo_model:
        torch.set_num_threads(1)
        bench_demo_rollout(args.demo_model, args.demo_data, 1 if quick else 3)
        return
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}"
    )
    torch.set_num_threads(1)
    tokenizer, model, prompts = setup()
    lengths = sorted(len(p) for p in prompts)
    print(
        f"{PRESET}: {sum(p.numel() for p in model.parameters()):,} parameters, vocab "
        f"{len(tokenizer)}; prompts of {lengths[0]}-{lengths[-1]} tokens (median {lengths[128]})"
    )
    bench_generation(model, tokenizer, prompts, quick)
    measure_sft(model, len(tokenizer), 2 if quick else 5)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
