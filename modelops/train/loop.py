"""The training loop: set up model, data and optimizer with Accelerate, then step.

One loop for CPU, one GPU or many (Accelerate), for classifiers and causal LMs. `train` sets up
the parts in order, then `_loop` steps: `_Stepper` (one optimizer step; gradient accumulation is
done here, not by Accelerate: the loss of a step is the sum over its micro-batches divided by the
step's total target count, so any split into micro-batches, 1x8 or 8x1, gives the same update),
`MetricsLog` (where metrics go), `EvalSchedule` (evaluation, best, early stopping) and
`Checkpointer` (Accelerate's save_state, atomic, keep K).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from modelops.errors import JobError
from modelops.log import say
from modelops.models.attention import pick_attention
from modelops.models.spec import ModelSpec
from modelops.rundir import set_aside
from modelops.tasks.task import Task, task_for
from modelops.train.checkpoint import Checkpointer, LoopState
from modelops.train.config import TrainConfig
from modelops.train.data import check_task, save_tokenize_report, setup_data
from modelops.train.evaluation import EvalSchedule, loss_sum
from modelops.train.metrics_log import MetricSink, MetricsLog
from modelops.train.record import JobRecord
from modelops.train.stopping import StopRequest, TrainingCancelled


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


def _precision(requested: str, record: JobRecord) -> tuple[str, str]:
    """The mixed precision to train in, and why: `auto` is bf16 on a GPU that has it, fp32 otherwise."""
    import torch

    gpu = torch.cuda.is_available()
    if requested == "auto":
        if gpu and torch.cuda.is_bf16_supported():
            return "bf16", "GPU supports it"
        return "no", "GPU without bf16" if gpu else "CPU"
    if requested != "no" and not gpu:
        message = f"trainer.mixed_precision={requested} needs a GPU; training in fp32 on this machine"
        warnings.warn(message, stacklevel=3)
        record.event(message)
        return "no", "CPU"
    return requested, f"trainer.mixed_precision={requested}"


def _setup_accelerator(config: TrainConfig, run_dir: Path, record: JobRecord):
    import torch
    from accelerate import Accelerator

    trackers = config.trackers
    options: dict[str, Any] = {"log_with": trackers, "project_dir": str(run_dir)} if trackers else {}
    # Without a GPU, Accelerate only sees several torchrun processes (MULTI_CPU over gloo) when told `cpu`.
    options["cpu"] = not torch.cuda.is_available()
    precision, why = _precision(config.mixed_precision, record)
    _fresh_accelerator_state()
    # The loop steps the scheduler once per optimizer step itself (not num_processes times, as Accelerate would).
    accelerator = Accelerator(mixed_precision=precision, step_scheduler_with_optimizer=False, **options)
    _announce(accelerator, record, f"precision: {'fp32' if precision == 'no' else precision} ({why})")
    return accelerator


def _fresh_accelerator_state() -> None:
    """Forget the settings an earlier training in this process gave Accelerate's process-wide state.

    `AcceleratorState` is a singleton: a second `Accelerator` with another mixed precision (two `train()`
    calls, a Hydra multirun over `trainer.mixed_precision`) would raise "already been initialized". The
    process group (`PartialState`) is kept.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _setup_attention(task: Task, spec: ModelSpec, config: TrainConfig) -> tuple[ModelSpec, str | None]:
    """The spec with the attention kernel the probe picks for a causal LM, and why (None for classifiers)."""
    if not task.causal:
        return spec, None
    kernel, why = pick_attention(spec.attn_implementation, config.batching == "packing")
    return (dataclasses.replace(spec, attn_implementation=kernel) if kernel else spec), why


def _setup_model(spec: ModelSpec, labels: list[str] | None, seed: int, liger: bool):
    """The model (with a head for `labels`, a classifier's: None otherwise) and its tokenizer."""
    from modelops.models.loading import apply_liger, load_model, load_tokenizer

    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    model = load_model(spec, labels=labels, seed=seed)
    if liger:
        apply_liger(model)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _setup_optimizer(model, config: TrainConfig, total_steps: int, device):
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
        and device.type in ("cuda", "cpu")
        and "fused" not in factory.keywords
    ):
        factory = functools.partial(factory, fused=True)  # one kernel for all parameters (transformers' default too)
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
        "total_steps": total_steps, "objective": config.objective,
    }  # fmt: skip


def train(
    spec: ModelSpec,
    dataset,
    config: TrainConfig,
    run_dir: str | Path,
    record: JobRecord | None = None,
    metric_sinks: Sequence[MetricSink] = (),
) -> TrainResult:
    """Fine-tune `spec` on `dataset["train"]`, write `metrics.jsonl`, checkpoints and `model/` in `run_dir`.

    Args:
        spec: the model and its PEFT config.
        dataset: a `modelops.Dataset` (classification data for `seq_cls`, text/completion/
            instruction/chat data for `causal_lm`).
        config: the loop's settings.
        run_dir: the run directory (only the main process writes to it).
        record: the run's `job.json` writer, updated with progress and events.
        metric_sinks: more places for every metrics row (called on the main process), beside
            `metrics.jsonl` and the `trainer.log_with` trackers.

    Raises:
        TrainingCancelled: on SIGTERM/SIGINT, after writing a checkpoint.
        ModelopsError: bad data or config, or a loss that became NaN/inf.
    """
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    record = record or JobRecord(run_dir / "job.json")
    config = check_task(spec, dataset, config)  # before anything is loaded
    task = task_for(spec, dataset.format, config.objective)
    accelerator = _setup_accelerator(config, run_dir, record)
    record.enabled = record.enabled and accelerator.is_main_process
    set_seed(config.seed)
    spec, why = _setup_attention(task, spec, config)
    model, tokenizer = _setup_model(spec, task.model_labels(dataset.labels), config.seed, config.liger)
    if why:
        _announce(accelerator, record, f"attention: {model.config._attn_implementation} ({why})")
    # The data needs the tokenizer; the step count needs the sharded loader; the scheduler needs the step count.
    data, loader = _setup_data(accelerator, dataset, tokenizer, model, spec, config, run_dir, record)
    windows_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total_steps = config.max_steps or windows_per_epoch * config.epochs * task.steps_per_window(config)
    optimizer, scheduler = _setup_optimizer(model, config, total_steps, accelerator.device)
    loss_step = task.loss_step(accelerator, model, spec, config)  # before prepare: the reference is the initial model
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if config.compile:
        # In place (Module.compile): parameter names and checkpoints stay those of the plain model. Not
        # Accelerate's dynamo_backend: that is process-wide state, fixed by the first Accelerator made.
        model.compile()
    state = LoopState(key={**_resume_key(dataset, spec, config, accelerator, total_steps), **task.resume_key(config)})
    checkpoints = Checkpointer(accelerator, model, state, run_dir, config.keep_checkpoints)
    for part in task.checkpointed():  # the task's own state (GRPO: the completions being stepped on)
        accelerator.register_for_checkpointing(part)
    resumed_from = _resume(checkpoints, config.resume, run_dir, record)
    if resumed_from is None:
        set_seed(config.seed, device_specific=True)  # per-process dropout streams
        if accelerator.is_main_process:
            set_aside(run_dir / "metrics.jsonl")  # a training that starts over never adds to an earlier curve
    stepper = task.stepper(_Stepper, accelerator, model, optimizer, scheduler, config, loss_step, tokenizer)
    log = _setup_logging(accelerator, config, spec, run_dir, record, total_steps, state.step, metric_sinks)
    evaluation = EvalSchedule(accelerator, model, data.validation, data.eval_collate, config, task.causal,
                              len(dataset.labels or []), log, record, checkpoints.save_best,
                              task.validation_scorer(loss_step, accelerator, model, data.validation,
                                                     data.eval_collate, config, stepper))  # fmt: skip
    record.update(status="running", total_steps=total_steps)
    record.event("training started", total_steps=total_steps, from_step=state.step,
                 trainable_parameters=_trainable(model), processes=accelerator.num_processes)  # fmt: skip
    windows = stepper.feed(_windows(accelerator, loader, data.sampler, state, config.gradient_accumulation_steps))
    _loop(state, windows, stepper, log, evaluation, checkpoints, config, total_steps, record)
    log.close()
    model_dir = _finish(accelerator, model, tokenizer, spec, dataset, config, state, checkpoints, record, run_dir,
                        task.causal)  # fmt: skip
    return TrainResult(
        model_dir=model_dir, steps=state.step, final_loss=stepper.last_loss,
        tokens_per_second=stepper.tokens_per_second(), best_step=state.best_step, best_metric=state.best_metric,
        stopped_early=evaluation.stopped_early, resumed_from=str(resumed_from) if resumed_from else None,
    )  # fmt: skip


def _loop(state: LoopState, windows: Iterator[list[dict[str, Any]]], stepper: _Stepper, log: MetricsLog,
          evaluation: EvalSchedule, checkpoints: Checkpointer, config: TrainConfig, total_steps: int,
          record: JobRecord) -> None:  # fmt: skip
    """Step until the step budget, early stopping or a stop signal (which checkpoints, then raises)."""
    stepper.model.train()  # from_pretrained gives a model in eval mode: dropout on from here
    with StopRequest() as stop:
        while state.step < total_steps and not evaluation.stopped_early:
            loss = stepper.step(next(windows))
            state.step += 1
            log.stepped()
            last = state.step >= total_steps
            if state.step % config.log_every == 0 or last:
                value = stepper.loss_value(loss, state.step)
                log.train(state.step, state.epoch, value, stepper.lr(), stepper.tokens_per_second(), stepper.metrics())
            if evaluation.due(state.step, last):
                with stepper.paused():
                    evaluation(state)
            if stop.requested_anywhere(stepper.accelerator):
                _checkpoint(checkpoints, stepper, loss, record)
                raise TrainingCancelled(f"{stop.signal_name or 'signal'}: checkpoint at step {state.step}")
            if config.checkpoint_every and state.step % config.checkpoint_every == 0:
                _checkpoint(checkpoints, stepper, loss, record)


def _setup_data(accelerator, dataset, tokenizer, model, spec: ModelSpec, config: TrainConfig, run_dir: Path, record):
    """Tokenised, batched data (shown in the preview) and its loader prepared for this process."""
    from modelops.tasks.packing import packed_layout

    layout = packed_layout(model) if config.batching == "packing" else "block_mask"
    if config.batching == "packing":
        _announce(accelerator, record, f"packing: {layout} layout ({_LAYOUT_WHY[layout]})")
    data = setup_data(dataset, tokenizer, spec, config, layout)
    record.event("data ready", cache_hits=data.cache_hits, train_batches=len(data.loader))
    if accelerator.is_main_process:
        save_tokenize_report(data.tokenize_report, run_dir / "data")
    if accelerator.is_main_process and data.preview:
        from modelops.io import atomic_path

        with atomic_path(run_dir / "data" / "train_preview.txt") as tmp:
            tmp.write_text(data.preview + "\n")
        say(data.preview)
    loader = accelerator.prepare(data.loader)
    if len(loader) == 0:
        raise JobError("the train split gives no batch on this process")
    return data, loader


_LAYOUT_WHY = {
    "flat": "flash attention, varlen kernels, no padding",
    "position_ids": "no mask: transformers keeps examples apart by position_ids",
    "block_mask": "this model ignores restarting position_ids: explicit block-diagonal mask",
}


def _announce(accelerator, record: JobRecord, message: str) -> None:
    """A setup choice, printed once and kept in job.json (by the main process only)."""
    if accelerator.is_main_process:
        record.event(message)
        say(message)


def _setup_logging(accelerator, config: TrainConfig, spec: ModelSpec, run_dir: Path, record: JobRecord,
                   total_steps: int, initial_step: int, extra: Sequence[MetricSink]) -> MetricsLog:  # fmt: skip
    from modelops.train.metrics_log import jsonl_sink, tracker_sink

    sinks = [jsonl_sink(run_dir / "metrics.jsonl"), *extra]
    if config.trackers:
        # Named as in the composed config (`trainer.epochs`): a tracker sharing modelops's MLflow run logs
        # the same keys with the same values, never a clash with another group's key of the same name.
        flat = {
            f"trainer.{k}": v for k, v in dataclasses.asdict(config).items() if isinstance(v, int | float | str | bool)
        }
        accelerator.init_trackers("modelops", config={**flat, "model.name_or_path": spec.name_or_path})
        sinks.append(tracker_sink(accelerator))
    return MetricsLog(sinks, record, total_steps, initial_step, accelerator.is_main_process)


def _resume(checkpoints: Checkpointer, resume: str | None, run_dir: Path, record: JobRecord) -> Path | None:
    """Restore the checkpoint `trainer.resume` points to, if any, and check that it belongs to this run."""
    from modelops.train.checkpoint import resolve_resume

    checkpoint = resolve_resume(resume, run_dir)
    if checkpoint is None:
        return None
    state, fresh = checkpoints.state, dict(checkpoints.state.key)
    checkpoints.load(checkpoint)
    changed = {k: (state.key.get(k), v) for k, v in fresh.items() if state.key.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise JobError(
            f"trainer.resume: checkpoint {checkpoint} belongs to a different run ({detail}); "
            "use a new run directory or trainer.resume=null"
        )
    record.event("resumed", checkpoint=str(checkpoint), step=state.step, epoch=state.epoch)
    return checkpoint


def _windows(accelerator, loader, sampler, state: LoopState, size: int) -> Iterator[list[dict[str, Any]]]:
    """The micro-batches of each optimizer step, epoch after epoch, from the data position in `state`."""
    while True:
        # A new, seeded order each epoch. Accelerate's loader keeps its own epoch counter and sets it on
        # the sampler when iterated, so both are set (the sampler also by reference: a wrapper may hide it).
        loader.set_epoch(state.epoch)
        epoch = loader
        if state.batches_in_epoch:  # resuming mid-epoch: the same order, without what was done
            epoch = accelerator.skip_first_batches(loader, state.batches_in_epoch)
        sampler.set_epoch(state.epoch)
        batches = iter(epoch)
        while window := list(islice(batches, size)):
            state.batches_in_epoch += len(window)
            yield window
        state.epoch, state.batches_in_epoch = state.epoch + 1, 0  # the next epoch starts from its first batch


def _checkpoint(checkpoints: Checkpointer, stepper: _Stepper, loss, record: JobRecord) -> None:
    with stepper.paused():
        stepper.loss_value(loss, checkpoints.state.step)  # never checkpoint weights a NaN has reached
        path = checkpoints.save()
    record.event("checkpoint saved", step=checkpoints.state.step, path=str(path))


def _finish(accelerator, model, tokenizer, spec: ModelSpec, dataset, config: TrainConfig, state: LoopState,
            checkpoints: Checkpointer, record: JobRecord, run_dir: Path, causal: bool) -> Path:  # fmt: skip
    from modelops.train.output import save_model

    if config.keep_best and checkpoints.restore_best():
        record.event("model/ holds the best evaluation", step=state.best_step, metric=state.best_metric)
    info = {
        "best_step": state.best_step if config.keep_best else None, "steps": state.step,
        "loss_on": config.loss_on if causal else None, "objective": config.objective,
        "merged": bool(config.merge_adapter and spec.peft is not None),
    }  # fmt: skip
    model_dir = save_model(accelerator, model, tokenizer, spec, dataset, run_dir, info)
    record.event("model saved", model_dir=str(model_dir))
    accelerator.end_training()
    return model_dir


class _Stepper:
    """One optimizer step over a window of micro-batches, and the throughput of all steps so far.

    Gradient accumulation: the loss of a step is the sum over its micro-batches divided by the
    step's target count over all processes, so any split of a step gives the same update.
    """

    def __init__(self, accelerator, model, optimizer, scheduler, causal: bool, max_grad_norm: float | None,
                 loss_step=None, liger: bool = False, chunked: bool = True):  # fmt: skip
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.causal, self.max_grad_norm = causal, max_grad_norm
        # The causal-LM loss: from hidden states in chunks, by Liger's fused kernel, or (not chunked) from full logits.
        self.liger, self.chunked = liger, chunked
        # A preference objective's step (modelops.tasks.preference): the summed loss of a batch, and its metrics.
        self.loss_step = loss_step
        self.tokens, self.idle, self.started = 0, 0.0, time.perf_counter()
        self.last_loss = float("nan")

    def step(self, window: list[dict[str, Any]]):
        """Step over `window`; return this process's share of the mean loss (a tensor: reading it syncs)."""
        import torch

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
                if self.loss_step:
                    loss = self.loss_step(self.model, batch) * scale
                else:
                    loss = loss_sum(self.model, batch, self.causal, self.liger, self.chunked)[0] * scale
                accelerator.backward(loss)
            total += loss.detach()
            self.tokens += int(batch["num_tokens"])
        if self.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if not self.optimizer.step_was_skipped:  # fp16: an overflowing step changes nothing, the LR neither
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / accelerator.num_processes

    def feed(self, windows: Iterator[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        """What `step` takes: the loop's windows of micro-batches, as they come."""
        return windows

    def loss_value(self, loss, step: int) -> float:
        """The mean loss over all processes (a device sync: only on logging and checkpoint steps)."""
        value = (
            self.accelerator.reduce(loss.detach(), "sum").item() if self.accelerator.num_processes > 1 else loss.item()
        )
        if not math.isfinite(value):
            raise JobError(f"loss became {value} at step {step}: lower trainer.learning_rate or check the data")
        self.last_loss = value
        return value

    def metrics(self) -> dict[str, float]:
        """The objective's own metrics since the last logged step (preference rewards; none for SFT)."""
        return self.loss_step.metrics(self.accelerator) if self.loss_step else {}

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time of the block (evaluation, checkpoints) out of tokens/s."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.idle += time.perf_counter() - started

    def tokens_per_second(self) -> float:
        elapsed = time.perf_counter() - self.started - self.idle
        return self.tokens * self.accelerator.num_processes / max(elapsed, 1e-9)


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
