"""Validation during training: loss per target token (and class metrics for classifiers), best tracking."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelops.models import loss as lm_loss
from modelops.tasks.batching import eval_batches
from modelops.train.config import TrainConfig
from modelops.train.record import JobRecord

if TYPE_CHECKING:
    from modelops.train.checkpoint import LoopState
    from modelops.train.metrics_log import MetricsLog

_BATCH_KEYS = ("num_tokens", "num_targets", "labels")


def loss_sum(model, batch: dict[str, Any], causal: bool, liger: bool = False, chunked: bool = True):
    """The summed cross-entropy of a batch over its target tokens (causal LM) or rows (classifier), and the logits.

    Summing, then dividing by the target count of the whole accumulated step, makes the update
    independent of how the step is split into micro-batches. A causal LM's loss comes from its hidden
    states in chunks (`modelops.models.loss`; Liger's fused kernel with `liger`), so no logits are
    returned (None); `chunked=False` takes the plain full-logits path instead.
    """
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k not in _BATCH_KEYS}
    labels = batch["labels"]
    if causal:
        if chunked:
            return lm_loss.loss_sum(model, inputs, labels, liger=liger), None
        return lm_loss.full_logits_loss_sum(model, inputs, labels), None
    logits = model(**inputs).logits
    return F.cross_entropy(logits.float(), labels, reduction="sum"), logits


def evaluate(accelerator, model, validation, collate, config: TrainConfig, causal: bool, num_labels: int):
    """Validation metrics: `loss` (mean over target tokens/rows), `perplexity` or `accuracy`/`f1`.

    Each process scores every `num_processes`-th batch and the sums are reduced, so every row
    counts exactly once and the result does not depend on the batch size or process count.
    """
    import torch

    batches = eval_batches(validation, config.eval_batch_size)
    batches = batches[accelerator.process_index :: accelerator.num_processes]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    predictions, references = [], []
    model.eval()
    with torch.inference_mode():
        for index in batches:
            batch = _to_device(collate(validation.__getitems__(index)), accelerator.device)
            loss, logits = loss_sum(model, batch, causal, config.liger, config.chunked_loss)
            total += torch.stack([loss.double(), torch.tensor(float(batch["num_targets"]), device=total.device)])
            if not causal:
                predictions.append(logits.argmax(-1).cpu())
                references.append(batch["labels"].cpu())
    model.train()
    total = accelerator.reduce(total, "sum") if accelerator.num_processes > 1 else total
    loss = float(total[0] / total[1].clamp(min=1))
    metrics = {"loss": loss}
    if causal:
        metrics["perplexity"] = math.exp(min(loss, 700.0))
    else:
        metrics.update(_class_metrics(accelerator, predictions, references, num_labels))
    return metrics


def _class_metrics(accelerator, predictions, references, num_labels: int) -> dict[str, float]:
    import torch

    from modelops.tasks.metrics import compute_classification

    pred = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
    ref = torch.cat(references) if references else torch.zeros(0, dtype=torch.long)
    if accelerator.num_processes > 1:
        pred = accelerator.gather_for_metrics(pred.to(accelerator.device), use_gather_object=True)
        ref = accelerator.gather_for_metrics(ref.to(accelerator.device), use_gather_object=True)
        pred, ref = torch.as_tensor(pred).cpu(), torch.as_tensor(ref).cpu()
    values = compute_classification(["accuracy", "f1"], pred.numpy(), ref.numpy(), num_labels)
    return {k: float(v) for k, v in values.items()}


def _to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def improved(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether `value` beats `best` (a NaN never does)."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


class EvalSchedule:
    """Evaluation during training: every `eval_every` steps and at the end; best tracking and early stopping.

    The best metric, its step and the count of evaluations without improvement live in the loop's
    `LoopState`, so they survive a resume.

    Args:
        accelerator, model: the prepared model.
        validation, collate: the tokenised validation split and its collator (None without `eval_every`).
        config: the evaluation settings (`eval_every`, `eval_metric`, `early_stopping_patience`, `keep_best`...).
        causal: causal LM (perplexity) or classifier (accuracy/F1).
        num_labels: the classifier's label count.
        log: where the `eval_*` rows go.
        record: `job.json`, which gets an event per evaluation.
        save_best: called after an improvement when `keep_best` is set.
        score: computes the metrics instead of `evaluate` (a preference objective's `validate`), or None.
    """

    def __init__(self, accelerator, model, validation, collate, config: TrainConfig, causal: bool, num_labels: int,
                 log: MetricsLog, record: JobRecord, save_best: Callable[[str], None],
                 score: Callable[[], dict[str, float]] | None = None):  # fmt: skip
        self.accelerator, self.model, self.validation, self.collate = accelerator, model, validation, collate
        self.config, self.causal, self.num_labels = config, causal, num_labels
        self.log, self.record, self.save_best, self.score = log, record, save_best, score
        self.stopped_early = False

    def due(self, step: int, last: bool) -> bool:
        every = self.config.eval_every
        return bool(every) and (step % every == 0 or last)

    def __call__(self, state: LoopState) -> None:
        """Evaluate at `state.step`, update the best in `state`, and decide on early stopping."""
        config = self.config
        if self.score is not None:
            metrics = self.score()
        else:
            metrics = evaluate(self.accelerator, self.model, self.validation, self.collate, config, self.causal,
                               self.num_labels)  # fmt: skip
        self.log.write({"step": state.step, **{f"eval_{k}": v for k, v in metrics.items()}})
        value = metrics[config.eval_metric]
        if improved(value, state.best_metric, config.higher_is_better):
            state.best_metric, state.best_step, state.bad_evals = value, state.step, 0
            if config.keep_best:
                self.save_best(config.eval_metric)
        else:
            state.bad_evals += 1
            patience = config.early_stopping_patience
            if patience and state.bad_evals >= patience:
                self.stopped_early = True
                self.record.event("early stopping", step=state.step, best_step=state.best_step,
                                  best_metric=state.best_metric)  # fmt: skip
        self.record.event("evaluated", step=state.step, **metrics)
