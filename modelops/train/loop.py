"""The training loop: set up model, data and optimizer with Accelerate, then step."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import JobError
from modelops.io import append_jsonl
from modelops.models.spec import ModelSpec
from modelops.train.config import TrainConfig
from modelops.train.record import JobRecord


@dataclass
class TrainResult:
    """What a finished training run left behind."""

    model_dir: Path
    steps: int
    final_loss: float
    tokens_per_second: float


def _setup_model(spec: ModelSpec, labels: list[str] | None, seed: int):
    from modelops.models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(spec.name_or_path, spec.trust_remote_code)
    model = load_model(spec, labels=labels, seed=seed)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _setup_data(dataset, tokenizer, spec: ModelSpec, config: TrainConfig):
    from modelops.train.batching import classification_loader, tokenize_classification

    if spec.task != "seq_cls":
        raise JobError(f"model.task={spec.task!r}: this version trains sequence classification only")
    if "train" not in dataset:
        raise JobError(f"the dataset has no 'train' split (splits: {dataset.split_names})")
    tokenized = tokenize_classification(dataset["train"], tokenizer, dataset.label2id, spec.max_length)
    if len(tokenized) == 0:
        raise JobError("the train split is empty")
    return classification_loader(tokenized, tokenizer, config.batch_size, config.seed, config.group_by_length)


def _setup_optimizer(model, config: TrainConfig, total_steps: int):
    import torch
    from transformers import get_scheduler

    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            # Biases and norm weights are not decayed (the usual AdamW practice).
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    factory = config.optimizer or torch.optim.AdamW
    optimizer = factory(groups, lr=config.learning_rate)
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = get_scheduler(config.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def _loss_step(model, batch) -> Any:
    return model(**batch).loss


def train(
    spec: ModelSpec, dataset, config: TrainConfig, run_dir: str | Path, record: JobRecord | None = None
) -> TrainResult:
    """Fine-tune `spec` on `dataset["train"]`, write `metrics.jsonl` and `model/` in `run_dir`.

    Args:
        spec: the model and its PEFT config.
        dataset: a `modelops.Dataset`.
        config: the loop's settings.
        run_dir: the run directory (only the main process writes to it).
        record: the run's `job.json` writer, updated with progress and events.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps, mixed_precision=config.mixed_precision
    )
    record = record or JobRecord(run_dir / "job.json", enabled=accelerator.is_main_process)
    set_seed(config.seed)
    model, tokenizer = _setup_model(spec, dataset.labels, config.seed)
    # The dataloader needs the tokenizer; the step count needs the dataloader.
    loader = _setup_data(dataset, tokenizer, spec, config)
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    sampler = loader.batch_sampler
    optimizer, scheduler = _setup_optimizer(model, config, total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    record.update(status="running", total_steps=total_steps)
    record.event("training started", total_steps=total_steps, trainable_parameters=_trainable(model))
    step, loss = _run_epochs(
        accelerator, model, optimizer, scheduler, loader, sampler, config, total_steps, run_dir, record
    )
    model_dir = _save_model(accelerator, model, tokenizer, spec, dataset, run_dir)
    record.event("model saved", model_dir=str(model_dir))
    return TrainResult(model_dir=model_dir, steps=step, final_loss=loss, tokens_per_second=record.data["tokens_per_s"])


def _run_epochs(accelerator, model, optimizer, scheduler, loader, sampler, config, total_steps, run_dir, record):
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, desc="train", disable=not (accelerator.is_main_process and sys.stderr.isatty()))
    step, tokens, started, loss_value = 0, 0, time.perf_counter(), float("nan")
    model.train()
    for epoch in range(config.epochs if not config.max_steps else sys.maxsize):
        sampler.set_epoch(epoch)  # a new, seeded order each epoch (kept by reference: accelerate may wrap it)
        for batch in loader:
            with accelerator.accumulate(model):
                loss = _loss_step(model, batch)
                accelerator.backward(loss)
                tokens += int(batch["attention_mask"].sum())
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == total_steps:
                # Reading the loss forces a device sync: only on logging steps.
                loss_value = _log(
                    accelerator, loss, step, epoch, total_steps, tokens, started, scheduler, run_dir, record
                )
                bar.set_postfix(loss=f"{loss_value:.4f}", tok_s=f"{record.data['tokens_per_s']:.0f}")
            if step >= total_steps:
                bar.close()
                return step, loss_value
    bar.close()
    return step, loss_value


def _log(accelerator, loss, step, epoch, total_steps, tokens, started, scheduler, run_dir, record) -> float:
    value = accelerator.gather(loss.detach()).float().mean().item()
    if not math.isfinite(value):
        raise JobError(f"loss became {value} at step {step}: lower trainer.learning_rate or check the data")
    elapsed = time.perf_counter() - started
    row = {
        "step": step, "epoch": epoch, "loss": value, "lr": scheduler.get_last_lr()[0],
        "tokens_per_s": tokens * accelerator.num_processes / max(elapsed, 1e-9),
    }  # fmt: skip
    if accelerator.is_main_process:
        append_jsonl(run_dir / "metrics.jsonl", row)
        if not sys.stderr.isatty():
            print(f"step {step}/{total_steps} loss {value:.4f} lr {row['lr']:.2e} tok/s {row['tokens_per_s']:.0f}")
    record.update(progress=step / total_steps, tokens_per_s=row["tokens_per_s"], last_loss=value)
    return value


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _save_model(accelerator, model, tokenizer, spec: ModelSpec, dataset, run_dir: Path) -> Path:
    from modelops.io import atomic_dir, write_json

    model_dir = run_dir / "model"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with atomic_dir(model_dir) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "modelops.json", {
                "base_model": spec.name_or_path, "task": spec.task, "labels": dataset.labels,
                "peft": spec.peft is not None, "data": dataset.lineage(),
            })  # fmt: skip
    accelerator.wait_for_everyone()
    return model_dir
