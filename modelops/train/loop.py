"""The training loop: set up model, data and optimizer with Accelerate, then step.

One loop for CPU, one GPU or many (Accelerate), for classifiers and causal LMs. Gradient
accumulation is done here, not by Accelerate: the loss of an optimizer step is the sum over all
its micro-batches divided by the step's total target count, so any split of a step into
micro-batches (1x8, 8x1) gives the same update.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from modelops.errors import JobError
from modelops.io import append_jsonl
from modelops.log import say
from modelops.models.spec import ModelSpec
from modelops.train.checkpoint import LoopState
from modelops.train.config import TrainConfig
from modelops.train.record import JobRecord


@dataclass
class TrainResult:
    """What a finished training run left behind."""

    model_dir: Path
    steps: int
    final_loss: float
    tokens_per_second: float
    best_step: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    resumed_from: str | None = None


def _precision(requested: str, record: JobRecord) -> str:
    import torch

    if requested != "no" and not torch.cuda.is_available():
        message = f"trainer.mixed_precision={requested} needs a GPU; training in fp32 on this machine"
        warnings.warn(message, stacklevel=3)
        record.event(message)
        return "no"
    return requested


def _setup_accelerator(config: TrainConfig, run_dir: Path, record: JobRecord):
    import torch
    from accelerate import Accelerator

    trackers = config.trackers
    options: dict[str, Any] = {"log_with": trackers, "project_dir": str(run_dir)} if trackers else {}
    # Without a GPU, Accelerate only sees several torchrun processes (MULTI_CPU over gloo) when told `cpu`.
    options["cpu"] = not torch.cuda.is_available()
    return Accelerator(mixed_precision=_precision(config.mixed_precision, record), **options)


def _setup_model(spec: ModelSpec, labels: list[str] | None, seed: int):
    from modelops.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    model = load_model(spec, labels=labels if spec.task == "seq_cls" else None, seed=seed)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _setup_optimizer(model, config: TrainConfig, total_steps: int, device):
    import functools

    import torch
    from transformers import get_scheduler

    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            # Biases and norm weights are not decayed (the usual AdamW practice).
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    factory = config.optimizer or functools.partial(torch.optim.AdamW)
    if (
        getattr(factory, "func", None) is torch.optim.AdamW
        and device.type == "cuda"
        and "fused" not in factory.keywords
    ):
        factory = functools.partial(factory, fused=True)  # one kernel for all parameters
    optimizer = factory(groups, lr=config.learning_rate)
    warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * total_steps)
    name = "constant_with_warmup" if config.scheduler == "constant" else config.scheduler
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def _resume_key(dataset, spec: ModelSpec, config: TrainConfig, accelerator, total_steps: int) -> dict[str, Any]:
    """What decides the data order and the step count: a checkpoint only fits a run that agrees on all of it."""
    return {
        "train_fingerprint": dataset.fingerprint("train"), "model": spec.name_or_path, "max_length": spec.max_length,
        "batch_size": config.batch_size, "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "batching": config.batching, "seed": config.seed, "num_processes": accelerator.num_processes,
        "total_steps": total_steps,
    }  # fmt: skip


def train(
    spec: ModelSpec, dataset, config: TrainConfig, run_dir: str | Path, record: JobRecord | None = None
) -> TrainResult:
    """Fine-tune `spec` on `dataset["train"]`, write `metrics.jsonl`, checkpoints and `model/` in `run_dir`.

    Args:
        spec: the model and its PEFT config.
        dataset: a `modelops.Dataset` (classification data for `seq_cls`, text/completion/
            instruction/chat data for `causal_lm`).
        config: the loop's settings.
        run_dir: the run directory (only the main process writes to it).
        record: the run's `job.json` writer, updated with progress and events.

    Raises:
        TrainingCancelled: on SIGTERM/SIGINT, after writing a checkpoint.
        ModelopsError: bad data or config, or a loss that became NaN/inf.
    """
    from accelerate.utils import set_seed

    from modelops.train.checkpoint import resolve_resume
    from modelops.train.data import check_task, setup_data

    run_dir = Path(run_dir)
    record = record or JobRecord(run_dir / "job.json")
    config = check_task(spec, dataset, config)  # before anything is loaded
    accelerator = _setup_accelerator(config, run_dir, record)
    record.enabled = record.enabled and accelerator.is_main_process
    set_seed(config.seed)
    model, tokenizer = _setup_model(spec, dataset.labels, config.seed)
    # The data needs the tokenizer; the step count needs the loader; the scheduler needs the step count.
    data = setup_data(dataset, tokenizer, spec, config)
    _show_preview(accelerator, data, run_dir, record)
    model, loader = accelerator.prepare(model, data.loader)
    if len(loader) == 0:
        raise JobError("the train split gives no batch on this process")
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    optimizer, scheduler = _setup_optimizer(model, config, total_steps, accelerator.device)
    optimizer = accelerator.prepare(optimizer)
    state = LoopState(key=_resume_key(dataset, spec, config, accelerator, total_steps))
    checkpoint = resolve_resume(config.resume, run_dir)
    if checkpoint is not None:
        state = _resume(checkpoint, state, accelerator, model, optimizer, scheduler, record)
    else:
        set_seed(config.seed, device_specific=True)  # per-process dropout streams
    run = _Run(accelerator, model, optimizer, scheduler, loader, data, spec, config, run_dir, record, total_steps)
    loss = run.loop(state, dataset.labels)
    model_dir = _finish(run, tokenizer, spec, dataset, state)
    return TrainResult(
        model_dir=model_dir, steps=state.step, final_loss=loss, tokens_per_second=run.tokens_per_second(),
        best_step=state.best_step, best_metric=state.best_metric, stopped_early=run.stopped_early,
        resumed_from=str(checkpoint) if checkpoint else None,
    )  # fmt: skip


def _show_preview(accelerator, data, run_dir: Path, record: JobRecord) -> None:
    record.event("data ready", cache_hits=data.cache_hits, train_batches=len(data.loader))
    if accelerator.is_main_process:
        from modelops.train.data import save_tokenize_report

        save_tokenize_report(data.tokenize_report, run_dir / "data")
    if accelerator.is_main_process and data.preview:
        from modelops.io import atomic_path

        with atomic_path(run_dir / "data" / "train_preview.txt") as tmp:
            tmp.write_text(data.preview + "\n")
        say(data.preview)


def _resume(checkpoint: Path, fresh: LoopState, accelerator, model, optimizer, scheduler, record) -> LoopState:
    from modelops.train.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint, accelerator, model, optimizer, scheduler)
    changed = {k: (state.key.get(k), v) for k, v in fresh.key.items() if state.key.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise JobError(
            f"trainer.resume: checkpoint {checkpoint} belongs to a different run ({detail}); "
            "use a new run directory or trainer.resume=null"
        )
    record.event("resumed", checkpoint=str(checkpoint), step=state.step, epoch=state.epoch)
    return state


def _finish(run: _Run, tokenizer, spec: ModelSpec, dataset, state: LoopState) -> Path:
    from modelops.train.checkpoint import load_trainable
    from modelops.train.output import save_model

    config = run.config
    best = run.run_dir / "checkpoints" / "best" / "model.safetensors"
    if config.keep_best and best.exists():
        load_trainable(run.accelerator.unwrap_model(run.model), best)
        run.record.event("model/ holds the best evaluation", step=state.best_step, metric=state.best_metric)
    info = {
        "best_step": state.best_step if config.keep_best else None, "steps": state.step,
        "loss_on": config.loss_on if spec.task == "causal_lm" else None,
        "merged": bool(config.merge_adapter and spec.peft is not None),
    }  # fmt: skip
    model_dir = save_model(run.accelerator, run.model, tokenizer, spec, dataset, run.run_dir, info)
    run.record.event("model saved", model_dir=str(model_dir))
    run.accelerator.end_training()
    return model_dir


class _Run:
    """The loop's moving parts; `loop` steps until the step budget, early stopping or a stop signal."""

    def __init__(self, accelerator, model, optimizer, scheduler, loader, data, spec, config, run_dir, record, total):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.loader, self.data, self.spec, self.config = loader, data, spec, config
        self.run_dir, self.record, self.total_steps = run_dir, record, total
        self.causal = spec.task == "causal_lm"
        self.stopped_early = False
        self.tokens, self.paused, self.started = 0, 0.0, time.perf_counter()
        self.last_loss = float("nan")

    # -- the loop -----------------------------------------------------------------------------

    def loop(self, state: LoopState, labels: list[str] | None) -> float:
        from tqdm.auto import tqdm

        from modelops.train.stopping import StopRequest

        self.state, self.num_labels = state, len(labels or [])
        self._start_trackers()
        self.record.update(status="running", total_steps=self.total_steps)
        self.record.event("training started", total_steps=self.total_steps, from_step=state.step,
                          trainable_parameters=_trainable(self.model),
                          processes=self.accelerator.num_processes)  # fmt: skip
        show = self.accelerator.is_main_process and sys.stderr.isatty()
        self.bar = tqdm(total=self.total_steps, initial=state.step, desc="train", disable=not show)
        self.model.train()
        with StopRequest() as self.stop:
            while state.step < self.total_steps and not self.stopped_early:
                self._epoch()
        self.bar.close()
        return self.last_loss

    def _epoch(self) -> None:
        state, ga = self.state, self.config.gradient_accumulation_steps
        # A new, seeded order each epoch. Accelerate's loader keeps its own epoch counter and sets it
        # on the sampler when iterated, so both are set (the sampler also by reference: a wrapper may hide it).
        self.loader.set_epoch(state.epoch)
        loader = self.loader
        if state.batches_in_epoch:  # resuming mid-epoch: the same order, without what was done
            loader = self.accelerator.skip_first_batches(loader, state.batches_in_epoch)
        self.data.sampler.set_epoch(state.epoch)
        batches = iter(loader)
        while state.step < self.total_steps and not self.stopped_early:
            window = list(islice(batches, ga))
            if not window:  # the epoch is done: the next one starts from its first batch
                state.epoch, state.batches_in_epoch = state.epoch + 1, 0
                return
            loss = self._step(window)
            state.step += 1
            state.batches_in_epoch += len(window)
            self._after_step(loss)

    def _step(self, window: list[dict[str, Any]]):
        """One optimizer step over `window` micro-batches; returns this process's share of the mean loss."""
        import contextlib

        import torch

        from modelops.train.evaluation import loss_sum

        accelerator = self.accelerator
        targets = torch.tensor(float(sum(b["num_targets"] for b in window)), device=accelerator.device)
        if accelerator.num_processes > 1:
            targets = accelerator.reduce(targets, "sum")
        # DDP averages gradients over processes: scale back up so the result is sum / all targets.
        scale = accelerator.num_processes / targets.clamp(min=1)
        total = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(self.model):
                loss = loss_sum(self.model, batch, self.causal)[0] * scale
                accelerator.backward(loss)
            total += loss.detach()
            self.tokens += int(batch["num_tokens"])
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        if not self.optimizer.step_was_skipped:  # fp16: an overflowing step changes nothing, the LR neither
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accelerator.num_processes

    def _after_step(self, loss) -> None:
        step, config = self.state.step, self.config
        self.bar.update(1)
        last = step >= self.total_steps
        if step % config.log_every == 0 or last:
            self._log(loss)
        if config.eval_every and (step % config.eval_every == 0 or last):
            self._paused(self._evaluate)
        if self._stop_requested():
            self._paused(self._checkpoint, loss)
            from modelops.train.stopping import TrainingCancelled

            raise TrainingCancelled(f"{self.stop.signal_name or 'signal'}: checkpoint at step {step}")
        if config.checkpoint_every and step % config.checkpoint_every == 0:
            self._paused(self._checkpoint, loss)

    # -- logging, evaluation, checkpoints -----------------------------------------------------

    def tokens_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started - self.paused
        return self.tokens * self.accelerator.num_processes / max(elapsed, 1e-9)

    def _paused(self, action, *args) -> None:
        """Run `action` with its time left out of tokens/s."""
        started = time.perf_counter()
        action(*args)
        self.paused += time.perf_counter() - started

    def _loss_value(self, loss) -> float:
        # Reading the loss forces a device sync: only on logging, evaluation and checkpoint steps.
        value = (
            self.accelerator.reduce(loss.detach(), "sum").item() if self.accelerator.num_processes > 1 else loss.item()
        )
        if not math.isfinite(value):
            raise JobError(
                f"loss became {value} at step {self.state.step}: lower trainer.learning_rate or check the data"
            )
        self.last_loss = value
        return value

    def _log(self, loss) -> None:
        value, step = self._loss_value(loss), self.state.step
        row = {
            "step": step, "epoch": self.state.epoch, "loss": value, "lr": self.scheduler.get_last_lr()[0],
            "tokens_per_s": self.tokens_per_second(),
        }  # fmt: skip
        self._write_row(row)
        if self.accelerator.is_main_process and not sys.stderr.isatty():
            say(f"step {step}/{self.total_steps} loss {value:.4f} lr {row['lr']:.2e} tok/s {row['tokens_per_s']:.0f}")
        self.bar.set_postfix(loss=f"{value:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
        self.record.update(progress=step / self.total_steps, tokens_per_s=row["tokens_per_s"], last_loss=value)

    def _write_row(self, row: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            append_jsonl(self.run_dir / "metrics.jsonl", row)
        if self.config.trackers:
            self.accelerator.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def _start_trackers(self) -> None:
        if self.config.trackers:
            flat = {k: v for k, v in dataclasses.asdict(self.config).items() if isinstance(v, int | float | str | bool)}
            self.accelerator.init_trackers("modelops", config={**flat, "model": self.spec.name_or_path})

    def _evaluate(self) -> None:
        from modelops.train.evaluation import evaluate, improved

        state, config = self.state, self.config
        metrics = evaluate(self.accelerator, self.model, self.data.validation, self.data.eval_collate, config,
                           self.causal, self.num_labels)  # fmt: skip
        value = metrics[config.eval_metric]
        self._write_row({"step": state.step, **{f"eval_{k}": v for k, v in metrics.items()}})
        if improved(value, state.best_metric, config.higher_is_better):
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            if config.keep_best:
                self._save_best()
        else:
            state.bad_evals += 1
            patience = config.early_stopping_patience
            if patience and state.bad_evals >= patience:
                self.stopped_early = True
                self.record.event("early stopping", step=state.step, best_step=state.best_step,
                                  best_metric=state.best_metric)  # fmt: skip
        self.record.event("evaluated", step=state.step, **metrics)

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        from modelops.io import atomic_dir, write_json
        from modelops.train.checkpoint import trainable_state

        if self.accelerator.is_main_process:
            with atomic_dir(self.run_dir / "checkpoints" / "best") as tmp:
                save_file(trainable_state(self.accelerator.unwrap_model(self.model)), str(tmp / "model.safetensors"))
                write_json(
                    tmp / "best.json", {"step": self.state.step, self.config.eval_metric: self.state.best_metric}
                )
        self.accelerator.wait_for_everyone()

    def _checkpoint(self, loss) -> None:
        from modelops.train.checkpoint import save_checkpoint

        self._loss_value(loss)  # never checkpoint weights a NaN has reached
        path = save_checkpoint(self.accelerator, self.model, self.optimizer, self.scheduler, self.state,
                               self.run_dir, self.config.keep_checkpoints)  # fmt: skip
        self.record.event("checkpoint saved", step=self.state.step, path=str(path))

    def _stop_requested(self) -> bool:
        if self.accelerator.num_processes == 1:
            return self.stop.requested
        import torch

        flag = torch.tensor(float(self.stop.requested), device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
