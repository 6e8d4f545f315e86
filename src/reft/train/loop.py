"""The run scaffold every trainer shares: set-up, the step loop, evaluation, checkpoints and resume.

A trainer (SFT, ReFT, online self-training) builds its model and data, then hands `TrainingRun.train`
a `step_fn(step) -> metrics` that performs ONE optimizer step. Everything around that step lives here,
once: progress bar, metrics file, dev evaluation cadence, best-by-dev selection, atomic checkpoints
with optimizer / scheduler / RNG state, resume, the wall-clock budget, and process-0-only file writes.

Scaling out: the same code runs as one process or under `torchrun` / `accelerate launch` (docs/scaling.md).
`batch_size` is global, `micro_batch_size` per device; trainers shard each global batch by process;
only the main process writes files or logs at INFO. `prepare` also applies the memory options every
trainer shares: LoRA adapters on the policy (saved merged, adapter kept for resume) and gradient
checkpointing (reft.models.lora).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from tqdm.auto import tqdm

from reft.checkpoint import (
    FINAL_LINK,
    Checkpoint,
    Checkpointer,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
)
from reft.config import ConfigError, config_to_dict, nest_aliases, save_run_config
from reft.files import RunComplete, check_output_dir, write_json_atomic, write_text_atomic
from reft.metrics import MetricsLogger
from reft.models.lora import (
    LoraAdapterFiles,
    MergedExport,
    attach_lora,
    enable_gradient_checkpointing,
    merged_state_dict,
)
from reft.run_lock import RunLock
from reft.train import zero
from reft.train.config import MixedPrecision, TrainConfig
from reft.train.interrupt import InterruptRequest, resume_command
from reft.train.optim import build_optimizer, build_scheduler
from reft.train.resume import RECORD_ONLY, check_resume, describe_changes, resume_changes
from reft.train.sharding import (
    ShardedTrainable,
    fsdp2_requested,
    load_optimizer_state,
)

logger = logging.getLogger(__name__)


class Companion(Protocol):
    """Saves and restores the trainable parts that are not the policy (e.g. a value head)."""

    def save(self, directory: str | Path) -> None: ...

    def load(self, directory: str | Path) -> None: ...


StepFn = Callable[[int], dict[str, float]]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]
"""Dev metrics of the policy it is given (`TrainingRun.generation_policy`)."""
DEV_METRIC = "accuracy"
"""The dev metric that selects the best checkpoint unless a trainer names another."""
COMPLETE_FILE = "complete.json"
"""Written when a run reaches its end: its summary, result paths and config."""
RESUME_LOG = "resumed_with_changes.jsonl"
"""One line per resume that changed an allowed setting (config.yaml then holds the new values)."""


@dataclass
class RunState:
    """What a checkpoint must restore besides weights and optimizer."""

    step: int = 0
    elapsed: float = 0.0
    best_metric: float = -math.inf
    best_step: int = -1
    best_metric_name: str = DEV_METRIC
    evals_since_best: int = 0
    """Dev evaluations since the dev metric last improved (early stopping with `patience`)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Trainer-specific state (e.g. a value head's weights)."""

    def summary(self) -> str:
        """One line for the end of a run."""
        best = (
            f"best dev {self.best_metric_name} {self.best_metric:.4f} at step {self.best_step}"
            if self.best_step >= 0
            else "no dev evaluation"
        )
        return f"finished at step {self.step} after {self.elapsed:.0f} s; {best}"


class TrainingRun:
    """One training run: owns the accelerator, output directory, logger, checkpoints and state."""

    def __init__(self, config: TrainConfig, stage: str, dev_metric: str = DEV_METRIC) -> None:
        """`dev_metric`: the key of the evaluation results whose maximum selects best/."""
        self.config = config
        self.stage = stage
        self.dev_metric = dev_metric
        self.out_dir = check_output_dir(config.out_dir)
        _forget_other_precision(config.mixed_precision.value)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision.value, **zero.accelerator_options()
        )
        self.is_main = self.accelerator.is_main_process
        if not self.is_main:  # one copy of every INFO line, from the main process
            logging.getLogger("reft").setLevel(logging.WARNING)
        self.zero_stage = zero.check_engaged(self.accelerator, config, stage)
        """The ZeRO stage when `model` is a DeepSpeed engine (reft.train.zero), else None."""
        self.deepspeed = self.zero_stage is not None
        """Whether checkpoints add every rank's DeepSpeed optimizer partition."""
        self.lock = RunLock(self.out_dir) if self.is_main else None
        """This run's hold on out_dir, taken before anything is written there."""
        self.checkpointer = Checkpointer(self.out_dir, keep_last=config.keep_last)
        self._stop_if_complete()
        self.state = RunState()
        self.resume_from: Checkpoint | None = self._find_resume_checkpoint()
        if self.is_main:
            save_run_config(config, self.out_dir)
        self.metrics = MetricsLogger(
            self.out_dir,
            enabled=self.is_main,
            tensorboard=config.tensorboard,
            wandb_project=config.wandb_project,
            run_config=config_to_dict(config),
        )
        seed_everything(config.seed + self.accelerator.process_index)
        self.model: torch.nn.Module | None = None
        """The accelerate-wrapped trainable module (call it for training forwards)."""
        self.policy: torch.nn.Module | None = None
        """The plain Hugging Face policy inside it (generation, evaluation, saving)."""
        self.companion: Companion | None = None
        self.lora: Any = None
        """The peft wrapper of `policy` when config.lora (its forward is `policy`'s own)."""
        self.tokenizer: Any = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.sharding: ShardedTrainable | None = None
        """Set when `model` is sharded with FSDP2 (reft.train.sharding): checkpoints gather it."""
        self.zero3: zero.Zero3Policy | None = None
        """Set when the policy is partitioned by ZeRO-3: checkpoints and generation gather it."""
        self.total_steps = 0
        self.steps_per_epoch = 1

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    def sum_over_processes(self, values: list[float]) -> list[float]:
        """Element-wise sums of `values` across processes (in float64; themselves with one)."""
        if self.num_processes == 1:
            return [float(value) for value in values]
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.accelerator.reduce(tensor, "sum").tolist()

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step on each process (global batch / (micro x processes))."""
        per_process, remainder = divmod(self.config.batch_size, self.num_processes)
        if remainder or per_process % self.config.micro_batch_size:
            raise ValueError(
                f"batch_size {self.config.batch_size} must split evenly into "
                f"{self.num_processes} processes x micro_batch_size {self.config.micro_batch_size}"
            )
        return per_process // self.config.micro_batch_size

    def model_source(self) -> str:
        """Where the weights come from: the checkpoint being resumed, else config.model.

        With LoRA the base weights never change: a resumed run reloads the base it started from
        (a preset's saved init) and `prepare` puts the checkpoint's adapter back on it.
        """
        if self.resume_from is None:
            return self.config.model
        if self.config.lora:
            preset = self.config.model.startswith("preset:")
            return str(self.out_dir / "init") if preset else self.config.model
        return str(self.resume_from.path)

    def prepare(
        self,
        trainable: torch.nn.Module,
        tokenizer: Any,
        *,
        total_steps: int,
        steps_per_epoch: int,
        policy: torch.nn.Module | None = None,
        companion: Companion | None = None,
        optimizer_steps: int | None = None,
    ) -> torch.nn.Module:
        """Build optimizer and schedule, wrap `trainable` with accelerate, restore a resume.

        trainable: the module whose trainable parameters the optimizer updates (the policy itself for
            SFT; policy + value head for PPO). policy: the Hugging Face model inside it that is saved
            with save_pretrained and evaluated (default: trainable). companion: saves/loads the rest
            of `trainable` beside the policy's files (e.g. the value head). total_steps: steps of
            the loop; optimizer_steps: updates the schedule spans (default: total_steps).

        With config.lora, adapters are injected into `policy` in place (its base weights frozen); with
        config.gradient_checkpointing, every Hugging Face model in `trainable` checkpoints its layers.
        """
        self.tokenizer = tokenizer
        self.policy = policy if policy is not None else trainable
        fsdp2 = self._fsdp2_asked()  # its refusals come before anything changes the model
        companions = [companion] if companion is not None else []
        if self.config.lora:
            self.lora = attach_lora(self.policy, self.config)
            companions.append(LoraAdapterFiles(self.lora))
            # peft's new modules (its dropout) start in train mode: put them in the mode of the
            # module they joined (an ActorCritic keeps every network in eval mode, dropout off).
            trainable.train(trainable.training)
        if self.config.gradient_checkpointing:
            enable_gradient_checkpointing(trainable)
        self.companion = _Companions(companions) if companions else None
        self.total_steps, self.steps_per_epoch = total_steps, max(1, steps_per_epoch)
        self._configure_deepspeed()
        if self.resume_from is not None and self.companion is not None:
            # Before any wrapping: a sharded (FSDP2) or partitioned (ZeRO-3) module cannot take a
            # plain state dict, and a wrapper copies the weights it is given.
            self.companion.load(self.resume_from.path)
        self.sharding = ShardedTrainable(trainable, self.policy, companion) if fsdp2 else None
        # Built after sharding: FSDP2 replaces each parameter with a DTensor holding its shard.
        parameters = [p for p in trainable.parameters() if p.requires_grad]
        optimizer = build_optimizer(parameters, self.config)
        self.scheduler = build_scheduler(optimizer, self.config, optimizer_steps or total_steps)
        self.model, self.optimizer = self._wrap(trainable, optimizer)
        if self.zero_stage == 3:
            self.zero3 = zero.Zero3Policy(self.policy, self.is_main)
        if self.resume_from is not None:
            self._restore(self.resume_from)
        return self.model

    def _fsdp2_asked(self) -> bool:
        """Whether `prepare` shards with FSDP2 (the launch asks for it, reft.train.sharding);
        ConfigError for what a sharded model cannot do."""
        if not fsdp2_requested():
            return False
        if self.config.lora:
            raise ConfigError("lora=true is not supported under FSDP2: launch without it (DDP)")
        if self.config.mixed_precision is MixedPrecision.fp16:
            # fp16's loss scaler is unscaled by accelerate's optimizer wrapper, not used here.
            raise ConfigError("mixed_precision=fp16 is not supported under FSDP2: use bf16")
        if not torch.distributed.is_initialized():
            logger.warning("FSDP2 asked for, but this is a single process: training unsharded")
            return False
        return True

    def _wrap(
        self, trainable: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        """accelerate's wrappers around model and optimizer (DDP, DeepSpeed), except for a module
        sharded by reft: on CPU accelerate would wrap it in DDP, and under its own FSDP2 (GPUs) it
        looks the layer classes up by name, which FSDP2 has renamed (FSDPLlamaDecoderLayer), and
        refuses an optimizer without its model. accelerate's backward, autocast, no_sync and
        clip_grad_norm_ work on the sharded module as it is."""
        if self.sharding is None:
            return self.accelerator.prepare(trainable, optimizer)
        return trainable, optimizer

    def _configure_deepspeed(self) -> None:
        """Under DeepSpeed: its micro-batch, accumulation and clipping from reft's config."""
        if self.deepspeed:
            plugin = self.accelerator.state.deepspeed_plugin
            zero.configure(plugin, self.config.micro_batch_size, self.config.max_grad_norm)

    def micro_batch(self, last: bool) -> AbstractContextManager:
        """Context of one micro-batch's forward and backward: gradients are synchronised across
        processes only with the `last` micro-batch of a step (DDP `no_sync`; under DeepSpeed, whose
        backward would otherwise take an optimizer step, the accumulation-boundary flag)."""
        if self.deepspeed:
            self.accelerator.gradient_state._set_sync_gradients(last)
            return nullcontext()
        return nullcontext() if last else self.accelerator.no_sync(self.model)

    def clip_and_step(self) -> float:
        """Clip gradients, take the optimizer and schedule step, zero gradients; returns the norm."""
        norm = 0.0
        if self.config.max_grad_norm > 0:
            parameters = self.model.parameters()
            norm = self.accelerator.clip_grad_norm_(parameters, self.config.max_grad_norm)
            norm = float(norm) if norm is not None else math.nan  # DeepSpeed may not report it
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def train(self, step_fn: StepFn, eval_fn: EvalFn | None) -> RunState:
        """Run optimizer steps until total_steps or the time budget; evaluate, log and save.

        Ctrl-C (SIGINT) finishes the current step, writes a checkpoint and raises KeyboardInterrupt
        after printing the command that resumes the run; a second Ctrl-C stops at once.
        """
        progress = tqdm(
            total=self.stop_step(), initial=self.state.step, desc=self.stage,
            disable=not self.is_main, dynamic_ncols=True,
        )  # fmt: skip
        with InterruptRequest() as interrupt:
            self._loop(step_fn, eval_fn, progress, interrupt)
        progress.close()
        self.metrics.close()
        if self.is_main:
            self.checkpointer.link_final()
            latest = self.checkpointer.latest()
            if latest is not None and self.checkpointer.best_step() is None:
                # No dev evaluation ever improved (no dev set, or an undefined metric such as the
                # AUC of a one-class dev set): best/ is the last checkpoint, so best/ always exists.
                logger.warning("no dev improvement recorded: best/ is the final checkpoint")
                self.checkpointer.mark_best(latest)
            if self._reached_its_end():
                write_json_atomic(self.out_dir / COMPLETE_FILE, {
                    "step": self.state.step, "summary": self.state.summary(), "best": str(self.checkpointer.best_dir),
                    "final": str(self.out_dir / FINAL_LINK), "config": config_to_dict(self.config),
                })  # fmt: skip
        return self.state

    def _reached_its_end(self) -> bool:
        """The run ended where its config says (its last step, or patience), not on a time budget."""
        if self.state.step >= self.stop_step():
            return True
        return 0 < self.config.patience <= self.state.evals_since_best

    def _stop_if_complete(self) -> None:
        """`resume=true` on a run that already reached its end, with nothing changed that would
        train further: RunComplete at once (exit 0), before any model is loaded."""
        record = self.out_dir / COMPLETE_FILE
        if not (self.config.resume and record.is_file()):
            return
        done = json.loads(record.read_text())
        latest = self.checkpointer.latest()
        if latest is None or latest.step != done.get("step"):
            return  # its checkpoints are not the ones the record was written for
        changes = resume_changes(done["config"], config_to_dict(self.config))
        if set(changes) <= RECORD_ONLY:
            raise RunComplete(
                f"{self.stage}: the run in {self.out_dir} is already complete ({done['summary']}); "
                f"its result: {done['best']} (last checkpoint: {done['final']})"
            )

    def _loop(
        self, step_fn: StepFn, eval_fn: EvalFn | None, progress: tqdm, interrupt: InterruptRequest
    ) -> None:
        config = self.config
        eval_every = config.eval_every or self.steps_per_epoch
        save_every = config.save_every or eval_every
        started = time.time() - self.state.elapsed
        stop_step = self.stop_step()
        while self.state.step < stop_step:
            metrics = step_fn(self.state.step)
            self.state.step += 1
            self.state.elapsed = time.time() - started
            step = self.state.step
            metrics["lr"] = self.scheduler.get_last_lr()[0]
            metrics["epoch"] = step / self.steps_per_epoch
            metrics |= step_peak_memory(self.device)
            progress.update(1)
            progress.set_postfix(
                {k: _short(v) for k, v in metrics.items() if k in _SHOWN}, refresh=False
            )
            if step % config.log_every == 0 or step == 1:
                self.metrics.log(step, metrics, "train", self.state.elapsed)
            out_of_time = config.max_seconds > 0 and self.state.elapsed >= config.max_seconds
            last = step == stop_step or out_of_time
            dev = self.evaluate(eval_fn) if (step % eval_every == 0 or last) else None
            interrupted = self._interrupted(interrupt)
            if step % save_every == 0 or last or dev is not None or interrupted:
                self.save(dev)
                progress.unpause()  # else the bar's rate, so its ETA, counts evaluation and save
            if interrupted:
                self._stop_for_interrupt()
            if out_of_time:
                logger.info("time budget of %.0f s reached at step %d", config.max_seconds, step)
                break
            if dev is not None and 0 < config.patience <= self.state.evals_since_best:
                logger.info("dev %s plateaued: no improvement in %d evaluations; best step %d",
                            self.dev_metric, config.patience, self.state.best_step)  # fmt: skip
                break

    def _interrupted(self, interrupt: InterruptRequest) -> bool:
        """Whether any process was interrupted: all processes stop at the same step."""
        if self.num_processes == 1:
            return interrupt.requested
        flag = torch.tensor([float(interrupt.requested)], device=self.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def _stop_for_interrupt(self) -> None:
        """After the interrupted step's checkpoint: say how to go on, then stop the run."""
        self.metrics.close()
        if self.is_main:
            print(f"\n{self.stage}: interrupted; checkpoint of step {self.state.step} written in "
                  f"{self.checkpointer.root}. Continue with:\n  {resume_command()}",
                  file=sys.stderr, flush=True)  # fmt: skip
        raise KeyboardInterrupt

    def stop_step(self) -> int:
        """The step the loop ends at: total_steps, or earlier with `stop_epochs`."""
        if self.config.stop_epochs > 0:
            return min(self.total_steps, math.ceil(self.config.stop_epochs * self.steps_per_epoch))
        return self.total_steps

    def evaluate(self, eval_fn: EvalFn | None) -> dict[str, float] | None:
        """Run `eval_fn` on the main process and log it as the dev split. Under FSDP2 and ZeRO-3
        every rank takes part in gathering the policy whole; the main process alone evaluates the
        copy."""
        if eval_fn is None:
            return None
        with self.generation_policy() as policy:
            dev = eval_fn(policy) if self.is_main else None
        self.accelerator.wait_for_everyone()
        if self.is_main:
            self.metrics.log(self.state.step, dev, "dev", self.state.elapsed)
            logger.info("%s step %d dev: %s", self.stage, self.state.step, _format(dev))
        return dev

    def save(self, dev: dict[str, float] | None) -> None:
        """Checkpoint the current step; copy it to best/ when the dev metric improved."""
        metric = self.dev_metric
        improved = dev is not None and dev.get(metric, -math.inf) > self.state.best_metric
        if improved:
            self.state.best_metric, self.state.best_step = dev[metric], self.state.step
            self.state.best_metric_name = metric
            self.state.evals_since_best = 0
        elif dev is not None:
            self.state.evals_since_best += 1
        self.accelerator.wait_for_everyone()
        policy, save_extra = self._export()  # on every rank: FSDP2's gathers are collectives
        trainer_state = self._trainer_state()  # idem
        if self.deepspeed:  # every rank writes its optimizer partition, moved into the checkpoint
            staging = zero.staging_dir(self.checkpointer.root, self.state.step)
            zero.save_state(self.model, staging, self.is_main)
            save_extra = _then_move_zero_state(save_extra, staging)
        if self.is_main:
            meta = {"stage": self.stage, "epoch": self.state.step / self.steps_per_epoch,
                    "elapsed": self.state.elapsed, "dev": dev, "config": config_to_dict(self.config)}  # fmt: skip
            checkpoint = self.checkpointer.save(
                self.state.step, policy, self.tokenizer, trainer_state, meta, save_extra
            )
            if improved:
                self.checkpointer.mark_best(checkpoint)
        self.accelerator.wait_for_everyone()

    def _export(self) -> tuple[Any, Callable[[Path], None] | None]:
        """(the policy as something with HF `save_pretrained`, the companions' save) for the main
        process to write: under FSDP2 a plain copy built from the gathered weights (None elsewhere)."""
        if self.sharding is not None:
            return self.sharding.gathered()
        if self.zero3 is not None:
            return self.zero3.gathered()
        policy = MergedExport(self.lora) if self.lora is not None else self.policy
        return policy, (self.companion.save if self.companion is not None else None)

    def policy_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs of the policy as a plain Hugging Face model (LoRA merged in; under
        FSDP2 gathered, so every rank must call it)."""
        if self.sharding is not None:
            return iter(self.sharding.policy_weights().items())
        if self.zero3 is not None:
            return iter(self.zero3.policy_weights().items())
        state = merged_state_dict(self.lora) if self.lora is not None else self.policy.state_dict()
        return iter(state.items())

    def generation_policy(self) -> AbstractContextManager[torch.nn.Module]:
        """The policy to sample from (rollouts, dev evaluation): `policy` itself, or under FSDP2 a
        whole copy gathered from the shards for the duration of the context, which every rank must
        then enter at the same point (reft.train.sharding)."""
        if self.sharding is not None:
            return self.sharding.gathered_for_generation()
        if self.zero3 is not None:
            return self.zero3.gathered_for_generation()
        return nullcontext(self.policy)

    def _trainer_state(self) -> dict[str, Any]:
        """What trainer_state.pt holds; under FSDP2 the optimizer state is gathered whole, keyed by
        parameter name, on the main process (every rank must call it)."""
        if self.deepspeed:  # DeepSpeed's own checkpoint of every rank's partition (`save`)
            optimizer: dict[str, Any] = {"deepspeed": zero.ZERO_DIR}
        elif self.sharding is not None:
            optimizer = self.sharding.optimizer_state(self.optimizer)
        else:
            optimizer = self.optimizer.state_dict()
        return {
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng_state(),
            "run": self.state.__dict__.copy(),
        }

    def _restore(self, checkpoint: Checkpoint) -> None:
        state = checkpoint.trainer_state()
        if self.deepspeed:
            zero.load_state(self.model, checkpoint.path)
        elif "deepspeed" in state["optimizer"]:
            raise ConfigError(f"{checkpoint.path} was written under DeepSpeed: resume it with the "
                              "same DeepSpeed launch")  # fmt: skip
        elif self.sharding is not None:  # a full, name-keyed state: each rank keeps its shard
            load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = RunState(**state["run"])
        restore_rng_state(state["rng"])
        self.metrics.truncate_after(self.state.step)
        if self.is_main:
            self.checkpointer.repair_best(self.state.best_step)
        logger.info("resumed %s from %s (step %d)", self.stage, checkpoint.path, self.state.step)

    def _find_resume_checkpoint(self) -> Checkpoint | None:
        if self.config.resume and self.is_main:
            self.checkpointer.latest_intact()  # sets corrupt checkpoints aside, or stops the run
        self.accelerator.wait_for_everyone()
        latest = self.checkpointer.latest()
        if not self.config.resume:
            if latest is not None:
                raise FileExistsError(
                    f"{self.out_dir} already holds checkpoints (latest: {latest.path.name}); pass "
                    "resume=true to continue that run, or choose another out_dir"
                )
            return None
        if latest is None:
            logger.warning(
                "resume=true but %s has no checkpoint: starting from scratch", self.out_dir
            )
            return None
        self._check_resume_config(latest)
        return latest

    def _check_resume_config(self, checkpoint: Checkpoint) -> None:
        """Refuse a resume whose settings would change the computation; record allowed changes."""
        saved = nest_aliases(type(self.config), checkpoint.meta().get("config") or {}, "checkpoint")
        changes = check_resume(saved, config_to_dict(self.config), str(checkpoint.path))
        if changes and self.is_main:
            logger.info("resuming with changed settings (they do not change the computation): %s",
                        describe_changes(changes))  # fmt: skip
            record = {"step": checkpoint.step, "changed": {k: list(v) for k, v in changes.items()}}
            log = self.out_dir / RESUME_LOG
            previous = log.read_text() if log.is_file() else ""
            write_text_atomic(log, previous + json.dumps(record) + "\n")


def _forget_other_precision(mixed_precision: str) -> None:
    """Let a later run in the same process (a test, a notebook: SFT then ReFT) choose another
    mixed precision: accelerate keeps one process-wide state and refuses a change otherwise. The
    process group (accelerate's PartialState) is kept."""
    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous is not None and previous != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _then_move_zero_state(
    save_extra: Callable[[Path], None] | None, staging: Path
) -> Callable[[Path], None]:
    """`save_extra`, then the staged DeepSpeed state moved into the checkpoint's directory."""

    def save(directory: Path) -> None:
        if save_extra is not None:
            save_extra(directory)
        zero.move_into(staging, directory)

    return save


class _Companions:
    """Several companions saved and restored together, in order."""

    def __init__(self, companions: list[Companion]) -> None:
        self.companions = companions

    def save(self, directory: str | Path) -> None:
        for companion in self.companions:
            companion.save(directory)

    def load(self, directory: str | Path) -> None:
        for companion in self.companions:
            companion.load(directory)


_SHOWN = ("loss", "lr", "tokens_per_s", "reward", "accuracy", "kl")


def _short(value: float) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def step_peak_memory(device: torch.device) -> dict[str, float]:
    """{"memory_peak_gib": the most this process allocated on its accelerator since the last call}
    (then the peak is reset, so each logged value is one step's); {} on CPU, which keeps no count."""
    if device.type != "cuda":
        return {}
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return {"memory_peak_gib": peak}


def _format(metrics: dict[str, float] | None) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in (metrics or {}).items())
