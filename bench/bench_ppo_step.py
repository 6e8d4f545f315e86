"""reft's full PPO step beside TRL's GRPOTrainer step: same model, batch and completion length.

    OMP_NUM_THREADS=2 python bench/bench_ppo_step.py [--quick] [--mixed-lengths]

Needs TRL, a benchmark-only extra (name torch in the same pip call, or pip resolves a CUDA build):
    pip install -e ".[bench]" torch==2.13.0

Set-up (once): a tokenizer trained on 2,000 synthetic problems and a randomly initialised tiny-llama
preset (~3.4 M parameters, fp32, sdpa) saved to a temporary directory; every model loads from it.
Prompts: the synthetic N-CoT questions whose prompt has the most common token length, so no step
pads and both sides process exactly 32 x (P + 64) tokens (--mixed-lengths: all questions; then 32
distinct prompts pad to a longer maximum than TRL's 8 distinct ones). Reward on both sides: reft's
strict grading reward (`reft.answers.grader.Grader`: 1 / 0.1 partial / 0). Random weights are fine for speed.

Contenders, each 32 completions x exactly 64 new tokens per step, one process, OMP_NUM_THREADS
threads (2 by default), interleaved:
- reft PPO: `PPOStep.__call__` as `reft train` runs it: 32 prompts x 1 sample, rollout with reft's
  engine, scoring, reference forward, then `ppo_epochs` passes over one mini-batch of 32 (micro-batch
  32, value head on the shared trunk, kl_coef 0.05); one mini-batch of one micro-batch, so epoch 1's
  forward also gives the old log-probs and values before KL / GAE / whitening (the fused first
  forward, reft.train.ppo.fuses_first_forward). ppo_epochs=2 (the paper's) and, for reference, 1;
  and ppo_epochs=2 "unfused": a separate no-grad policy+value forward before the updates, as reft
  runs any other batch split. Exactly 64 tokens: the rollout gets an EOS id outside the vocabulary
  (a proxy tokenizer), so no row ends early.
- TRL GRPO: `GRPOTrainer.train` with 8 prompts x 4 generations = 32 completions per optimizer step
  (per_device_train_batch_size 32, num_generations 4, num_iterations 1: one update per rollout, so
  TRL skips its old-log-prob forward), `min_new_tokens` = `max_completion_length` = 64 (EOS masked
  until the cap), fp32, gradient checkpointing off (TRL's default is on; reft's is off), beta 0 (TRL's
  default: no reference model) and beta 0.05 (a reference forward, like reft).
- TRL GRPO with num_iterations=2 (beta 0.05): two optimizer steps on each generated batch (TRL then
  also runs a no-grad forward for the old log-probs), the same work per rollout as reft's
  ppo_epochs=2. One of its "steps" in the table is one rollout = two TRL optimizer steps.

Timing: each TRL trainer runs its real `train()` loop in a thread, and a baton lets exactly one
contender run at a time: rounds of N steps of each, in turn (order reversed every other round), so
load from other processes hits all of them alike. A TRL step is the time between consecutive
`on_step_end` callbacks (data, generation, reward, reference forward, loss, backward, optimizer step,
callbacks); its split comes from timing wrappers around `_generate`, `_calculate_rewards` and
`_generate_and_score_completions` ("update" = the rest). reft's split is its own time_* metrics:
"forward" = time_forward (the reference's forward, plus the policy+value forward when unfused),
"update" = time_update (with the fused forward, time_fused_forward, printed under the table).
Warm-up steps are discarded. The table shows median and min wall s/step, the median of each part,
median CPU s/step (process time, all threads: less sensitive to other load) and the ratios of
medians ours (ppo_epochs=2) / each contender.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import datetime
import logging
import platform
import statistics
import tempfile
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
import transformers

from reft.answers.grader import Grader
from reft.data.example import CotKind
from reft.data.prompts import render_generation_prompt, render_prompt, render_target
from reft.data.synthetic import SynthConfig, generate_examples
from reft.data.tokenize import encode_prompt
from reft.generation.config import SamplingSettings
from reft.models.load import load_causal_lm, load_tokenizer
from reft.models.presets import init_tiny_checkpoint
from reft.models.value import VALUE_MODELS, FrozenReference
from reft.train.config import PPOConfig
from reft.train.loop import TrainingRun
from reft.train.ppo import PPOStep
from reft.train.rollout import make_rollout_backend

THREADS = int(os.environ["OMP_NUM_THREADS"])
"""Both sides run with this many threads (2 unless OMP_NUM_THREADS says otherwise)."""
PROMPTS = 32
"""Completions per step on both sides (ours: 32 prompts x 1; TRL: 8 prompts x 4)."""
NEW_TOKENS = 64
TRL_GENERATIONS = 4
KL_COEF = 0.05
LR = 3e-5
SPLIT = ("rollout", "scoring", "forward", "update", "other")
"""Parts of a step: sampling, reward, pre-update forwards (+ KL/GAE/advantages unless reft fuses
its first forward into the update), updates, the rest."""


class NoEOSTokenizer:
    """A tokenizer whose EOS id is outside the vocabulary: rollouts then never stop early."""

    def __init__(self, tokenizer, never_id: int) -> None:
        self._tokenizer = tokenizer
        self.eos_token_id = never_id

    def __getattr__(self, name: str):
        return getattr(self._tokenizer, name)


def build_checkpoint(root: Path, mixed_lengths: bool) -> tuple[Path, list, str]:
    """The tiny-llama preset with a tokenizer trained on synthetic problems, and the questions.

    Unless `mixed_lengths`, only questions whose prompt has the most common token length are kept:
    every step then pads nothing and both sides process exactly 32 x (P + 64) tokens (with mixed
    lengths, 32 distinct prompts pad to a longer maximum than TRL's 8 distinct ones).
    """
    examples = generate_examples(SynthConfig(), "train", 2000)
    texts = [render_prompt(e.question) + render_target(e, CotKind.nl) for e in examples]
    init_dir = init_tiny_checkpoint("tiny-llama", texts, root / "init", vocab_size=1024, seed=0)
    tokenizer = load_tokenizer(str(init_dir))
    lengths = [len(encode_prompt(tokenizer, render_generation_prompt(e.question, CotKind.nl)))
               for e in examples]  # fmt: skip
    if mixed_lengths:
        return init_dir, examples, f"{min(lengths)}-{max(lengths)} (mixed)"
    length = Counter(lengths).most_common(1)[0][0]
    return init_dir, [e for e, n in zip(examples, lengths, strict=True) if n == length], str(length)


class Ours:
    """reft's PPO step, built as `reft.train.ppo.run_ppo` builds it (without the outer loop)."""

    def __init__(
        self, init_dir: Path, examples: list, root: Path, total_steps: int, ppo_epochs: int,
        fused: bool = True,
    ) -> None:  # fmt: skip
        self.name = f"reft PPO, value head + reference, ppo_epochs={ppo_epochs}" + (
            "" if fused else " (unfused)"
        )
        config = PPOConfig(
            model=str(init_dir), dev_data=None,
            out_dir=str(root / f"ppo_epochs{ppo_epochs}{'' if fused else '_unfused'}"),
            batch_size=PROMPTS, mini_batch_size=PROMPTS, micro_batch_size=PROMPTS,
            samples_per_prompt=1, ppo_epochs=ppo_epochs,
            sampling=SamplingSettings(max_new_tokens=NEW_TOKENS), kl_coef=KL_COEF, lr=LR,
            max_steps=total_steps, log_every=10**9,
        )  # fmt: skip
        run = TrainingRun(config, stage="reft")
        policy = load_causal_lm(str(init_dir), dtype="float32", device=str(run.device))
        tokenizer = load_tokenizer(str(init_dir))
        actor_critic = VALUE_MODELS[config.value_model.value](policy, config.seed)
        reference = FrozenReference(
            load_causal_lm(str(init_dir), dtype="float32", device=str(run.device))
        )
        run.prepare(
            actor_critic, tokenizer, total_steps=total_steps, steps_per_epoch=total_steps,
            policy=actor_critic.policy, companion=actor_critic,
            optimizer_steps=total_steps * config.ppo_epochs,
        )  # fmt: skip
        run.tokenizer = NoEOSTokenizer(tokenizer, never_id=policy.config.vocab_size)
        self.grader = Grader(examples[0].answer_kind, CotKind.nl, strict=True)
        backend = make_rollout_backend(config, policy, str(init_dir), 0, 1, run.device)
        self.ppo_step = PPOStep(run, config, examples, reference, backend, self.grader)
        if not self.ppo_step.fused:
            raise RuntimeError("this configuration should take the fused first forward")
        self.ppo_step.fused = fused
        self.step_index = 0
        self.records: list[dict[str, float]] = []

    def run(self, steps: int) -> None:
        for _ in range(steps):
            started, cpu_started = time.perf_counter(), time.process_time()
            metrics = self.ppo_step(self.step_index)
            total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            self.step_index += 1
            if metrics["response_length"] != NEW_TOKENS:
                raise RuntimeError(
                    f"reft rollout length {metrics['response_length']} != {NEW_TOKENS}"
                )
            parts = {key: metrics[f"time_{key}"] for key in SPLIT[:-1]}
            other = total - sum(parts.values())
            fused = metrics.get("time_fused_forward", 0.0)
            self.records.append({"total": total, "cpu": cpu, **parts, "other": other,
                                 "fused_forward": fused})  # fmt: skip

    def close(self) -> None:
        self.grader.close()


class TRLGRPO:
    """TRL's GRPOTrainer running its real `train()` loop in a thread that pauses after each N steps."""

    def __init__(
        self, init_dir: Path, examples: list, root: Path, total_steps: int, beta: float,
        num_iterations: int = 1,
    ) -> None:  # fmt: skip
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from transformers.trainer_callback import PrinterCallback
        from trl import GRPOConfig, GRPOTrainer

        self.name = (
            f"TRL GRPO, beta={beta:g}"
            + (" (reference model)" if beta else " (no reference)")
            + (f", num_iterations={num_iterations}" if num_iterations > 1 else "")
        )
        # One timed step = one rollout = num_iterations TRL optimizer steps.
        self.num_iterations, self._updates = num_iterations, 0
        self.grader = Grader(examples[0].answer_kind, CotKind.nl, strict=True)

        def strict_reward(completions: list[str], answer: list[str], **_) -> list[float]:
            return [grade.reward for grade in self.grader.grade(completions, answer)]

        rows = [{"prompt": render_generation_prompt(e.question, CotKind.nl), "answer": e.answer}
                for e in examples]  # fmt: skip
        args = GRPOConfig(
            output_dir=str(root / f"trl_beta{beta:g}_mu{num_iterations}"),
            max_steps=total_steps * num_iterations, num_iterations=num_iterations, learning_rate=LR,
            per_device_train_batch_size=PROMPTS, num_generations=TRL_GENERATIONS,
            gradient_accumulation_steps=1, max_completion_length=NEW_TOKENS,
            generation_kwargs={"min_new_tokens": NEW_TOKENS}, beta=beta, temperature=1.0,
            top_p=1.0, top_k=0, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
            report_to="none", save_strategy="no", logging_steps=10**9, disable_tqdm=True,
            dataloader_num_workers=0, max_grad_norm=1.0, seed=0,
        )  # fmt: skip
        model = AutoModelForCausalLM.from_pretrained(
            init_dir, dtype=torch.float32, attn_implementation="sdpa"
        )
        self.trainer = GRPOTrainer(
            model=model, reward_funcs=strict_reward, args=args,
            train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(init_dir),
        )  # fmt: skip
        self.parts: dict[str, float] = {}
        for method, part in (("_generate", "rollout"), ("_calculate_rewards", "scoring"),
                             ("_generate_and_score_completions", "before_update")):  # fmt: skip
            setattr(self.trainer, method, self._timed(getattr(self.trainer, method), part))
        owner = self

        class Pause(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                owner._step_ended()

        self.trainer.add_callback(Pause())
        self.trainer.remove_callback(PrinterCallback)  # it prints the final train metrics
        self.records: list[dict[str, float]] = []
        self._go, self._paused = threading.Semaphore(0), threading.Semaphore(0)
        self._remaining, self._error = 0, None
        self._thread = threading.Thread(target=self._train, name=self.name, daemon=True)
        self._thread.start()

    def _timed(self, method, part: str):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.parts[part] = self.parts.get(part, 0.0) + time.perf_counter() - started

        return wrapper

    def _train(self) -> None:
        torch.set_num_threads(THREADS)
        self._go.acquire()
        self._started, self._cpu_started = time.perf_counter(), time.process_time()
        try:
            self.trainer.train()
        except BaseException as error:  # reported by `run` in the main thread
            self._error = error
        finally:
            self._paused.release()

    def _step_ended(self) -> None:
        self._updates += 1
        if self._updates % self.num_iterations:
            return  # the rollout's next optimizer step belongs to the same timed step
        total, cpu = time.perf_counter() - self._started, time.process_time() - self._cpu_started
        length = self.trainer._metrics["train"]["completions/mean_length"][-1]
        if length != NEW_TOKENS:
            self._error = RuntimeError(f"TRL completion length {length} != {NEW_TOKENS}")
        parts, self.parts = self.parts, {}
        forward = (
            parts.get("before_update", 0.0) - parts.get("rollout", 0.0) - parts.get("scoring", 0.0)
        )
        record = {"total": total, "cpu": cpu, "rollout": parts.get("rollout", 0.0),
                  "scoring": parts.get("scoring", 0.0), "forward": forward,
                  "update": total - parts.get("before_update", 0.0)}  # fmt: skip
        record["other"] = 0.0  # the TRL remainder (loop, callbacks) is counted in "update"
        self.records.append(record)
        self._remaining -= 1
        if self._remaining == 0:
            self._paused.release()
            self._go.acquire()
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def run(self, steps: int) -> None:
        self._remaining = steps
        self._go.release()
        self._paused.acquire()
        if self._error is not None:
            raise RuntimeError(f"{self.name} failed") from self._error

    def close(self) -> None:
        self._go.release()  # let train() finish its last step and return
        self._thread.join()
        self.grader.close()


def measure(contenders: list, warmup: int, rounds: int, per_round: int) -> None:
    """Warm every contender up, then `rounds` rounds of `per_round` steps of each, in turn."""
    for contender in contenders:
        contender.run(warmup)
        del contender.records[:]
    for index in range(rounds):
        order = contenders if index % 2 == 0 else contenders[::-1]
        for contender in order:
            contender.run(per_round)
        print(f"round {index + 1}/{rounds}: "
              + ", ".join(f"{c.records[-1]['total']:.3f}" for c in contenders), flush=True)  # fmt: skip


def report(contenders: list) -> str:
    """A markdown table: medians over the timed steps (split columns are medians of each part)."""

    def median(contender, key: str) -> float:
        return statistics.median(record[key] for record in contender.records)

    ours = contenders[0]
    lines = [
        "| step: 32 completions x 64 tokens | median s/step | min s/step | rollout | scoring | "
        "forward | update | other | CPU s/step | ours / this (wall) | ours / this (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for contender in contenders:
        wall, cpu = median(contender, "total"), median(contender, "cpu")
        fastest = min(record["total"] for record in contender.records)
        parts = " | ".join(f"{median(contender, key):.3f}" for key in SPLIT)
        lines.append(
            f"| {contender.name} | {wall:.3f} | {fastest:.3f} | {parts} | {cpu:.2f} | "
            f"{median(ours, 'total') / wall:.2f} | {median(ours, 'cpu') / cpu:.2f} |"
        )
    fused = [c for c in contenders if isinstance(c, Ours) and median(c, "fused_forward") > 0]
    lines += [""] if fused else []
    for contender in fused:
        lines.append(f"{contender.name}: of its update, the fused first forward (which also gives "
                     f"the old log-probs and values) took {median(contender, 'fused_forward'):.3f} s")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds (default 8, quick 2)"
    )
    parser.add_argument(
        "--per-round", type=int, default=3, help="steps of each contender per round"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each contender")
    parser.add_argument("--mixed-lengths", action="store_true",
                        help="prompts of every length (default: all prompts of one token length)")  # fmt: skip
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 8)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import trl

    total_steps = args.warmup + rounds * args.per_round
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_ppo_step.") as tmp:
        root = Path(tmp)
        init_dir, examples, prompt_length = build_checkpoint(root, args.mixed_lengths)
        contenders = [Ours(init_dir, examples, root, total_steps, ppo_epochs=2),
                      TRLGRPO(init_dir, examples, root, total_steps, beta=0.0),
                      TRLGRPO(init_dir, examples, root, total_steps, beta=KL_COEF),
                      TRLGRPO(init_dir, examples, root, total_steps, beta=KL_COEF, num_iterations=2),
                      Ours(init_dir, examples, root, total_steps, ppo_epochs=1),
                      Ours(init_dir, examples, root, total_steps, ppo_epochs=2, fused=False)]  # fmt: skip
        try:
            measure(contenders, args.warmup, rounds, args.per_round)
        finally:
            for contender in contenders:
                contender.close()
    print(f"\n{datetime.date.today()}: {platform.machine()}, {os.cpu_count()} CPUs (load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after), torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}, {THREADS} threads; "
          f"prompt length {prompt_length} tokens, {len(examples)} questions; "
          f"{len(contenders[0].records)} timed steps each ({rounds} interleaved rounds x "
          f"{args.per_round}) after {args.warmup} warm-up\n")  # fmt: skip
    print(report(contenders))


if __name__ == "__main__":
    main()
