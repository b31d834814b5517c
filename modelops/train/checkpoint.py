"""Resumable checkpoints in `run_dir/checkpoints/step-N/`, each written whole or not at all.

Accelerate's `save_state` writes them: optimizer, scheduler and gradient-scaler states, every
process's RNG states, the loop's position (`LoopState`, registered for checkpointing) and the
weights. FSDP and DeepSpeed save their weights sharded, their own way; otherwise a hook keeps only
the trainable ones in `model.safetensors` (the adapter and new head under PEFT, every weight in a
full fine-tune), so a LoRA checkpoint holds no copy of the frozen base. Every process writes into
`.step-N.tmp/` beside the final directory (the write is collective under FSDP/DeepSpeed); then the
main process marks it `COMPLETE` and renames it into place, so a run killed while writing leaves
no half checkpoint behind, and resume looks only at complete ones.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modelops.errors import JobError
from modelops.io import write_json

COMPLETE = "COMPLETE"
WEIGHTS_FILE = "model.safetensors"  # the name Accelerate gives the first model's weights


@dataclass
class LoopState:
    """Where the loop is, saved with every checkpoint.

    Args:
        step: optimizer steps done.
        epoch: the epoch in progress.
        batches_in_epoch: micro-batches of `epoch` already consumed (per process).
        best_metric, best_step: the best evaluation so far.
        bad_evals: evaluations since the last improvement (early stopping).
        key: what decides the data order and the step count; a resumed run must match it.
    """

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    key: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for f in fields(self):
            setattr(self, f.name, saved[f.name])


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    found = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / COMPLETE).exists()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def resolve_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: `auto` -> the latest complete one (or none), a path -> that one."""
    if resume is None:
        return None
    if resume == "auto":
        found = complete_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / COMPLETE).exists():
        raise JobError(f"trainer.resume: {path} is not a complete checkpoint (no {COMPLETE} marker)")
    return path


def trainable_state(model) -> dict[str, Any]:
    """The parameters that training changes, by name, on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, path: str | Path) -> None:
    """Copy the weights saved by `trainable_state` back into `model`; the names must match exactly."""
    import torch
    from safetensors.torch import load_file

    saved = load_file(str(path))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved))[:3], sorted(set(saved) - set(params))[:3]
        raise JobError(f"{path}: weights do not fit this model (missing {missing}, unexpected {extra})")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


class Checkpointer:
    """Writes the run's checkpoints through Accelerate, keeps the `keep` latest, and restores one.

    Args:
        accelerator: the run's `Accelerator`, with the model, optimizer and scheduler prepared.
        model: the prepared model (its trainable weights also go to `checkpoints/best/`).
        state: the loop's position; registered here, so it travels with every checkpoint.
        run_dir: the run directory (checkpoints go to its `checkpoints/`).
        keep: how many complete checkpoints to keep.
    """

    def __init__(self, accelerator, model, state: LoopState, run_dir: Path, keep: int):
        self.accelerator, self.model, self.state = accelerator, model, state
        self.run_dir, self.keep = Path(run_dir), keep
        self.root = checkpoints_dir(run_dir)
        accelerator.register_for_checkpointing(state)
        accelerator.register_save_state_pre_hook(self._keep_trainable)
        accelerator.register_load_state_pre_hook(self._load_trainable)

    def save(self) -> Path:
        """Write `checkpoints/step-N/` for the current step (every process calls this)."""
        step, main = self.state.step, self.accelerator.is_main_process
        final, tmp = self.root / f"step-{step}", self.root / f".step-{step}.tmp"
        if (final / COMPLETE).exists():
            return final
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        try:
            self.accelerator.save_state(str(tmp))
            self.accelerator.wait_for_everyone()
            if main:
                (tmp / COMPLETE).write_text(f"{step}\n")
        except Exception as exc:
            # A failed write (a full disk, say) leaves nothing behind and frees what it took.
            free = shutil.disk_usage(self.root).free
            shutil.rmtree(tmp, ignore_errors=True)
            raise JobError(_write_failure(self.run_dir, step, exc, free)) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if main:
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of the same step
            os.replace(tmp, final)
            prune(self.run_dir, self.keep)
        self.accelerator.wait_for_everyone()
        return final

    def load(self, path: Path) -> None:
        """Restore everything `save` wrote, the loop state included (every process calls this)."""
        from accelerate.utils import RNG_STATE_NAME

        if not (path / f"{RNG_STATE_NAME}_0.pkl").exists():
            raise JobError(
                f"trainer.resume: {path} is not a checkpoint this version can restore (no Accelerate state); "
                "use trainer.resume=null to start fresh"
            )
        self.accelerator.load_state(str(path))

    def save_best(self, metric: str) -> None:
        """Keep the trainable weights of the best evaluation so far in `checkpoints/best/`."""
        from safetensors.torch import save_file

        from modelops.io import atomic_dir

        if self.accelerator.is_main_process:
            with atomic_dir(self.root / "best") as tmp:
                save_file(trainable_state(self.accelerator.unwrap_model(self.model)), str(tmp / WEIGHTS_FILE))
                write_json(tmp / "best.json", {"step": self.state.best_step, metric: self.state.best_metric})
        self.accelerator.wait_for_everyone()

    def restore_best(self) -> bool:
        """Load the weights `save_best` kept into the model; false when there are none."""
        best = self.root / "best" / WEIGHTS_FILE
        if best.exists():
            load_trainable(self.accelerator.unwrap_model(self.model), best)
        return best.exists()

    def _keep_trainable(self, models, weights: list, output_dir: str) -> None:
        # `weights` is empty under FSDP/DeepSpeed, which have saved the model their own way.
        for i, model in enumerate(models[: len(weights)]):
            weights[i] = trainable_state(self.accelerator.unwrap_model(model))

    def _load_trainable(self, models: list, input_dir: str) -> None:
        # The models left in the list are the ones Accelerate would load from a full state dict.
        for model in models:
            load_trainable(self.accelerator.unwrap_model(model), Path(input_dir) / WEIGHTS_FILE)
        models.clear()


def _write_failure(run_dir: Path, step: int, exc: Exception, free: int) -> str:
    # torch.save reports a full disk as an opaque "unexpected pos" error: say what happened.
    full = getattr(exc, "errno", None) == 28 or free < 1 << 20
    reason = "no space left on device" if full else (getattr(exc, "strerror", None) or str(exc))
    kept = [p.name for p in complete_checkpoints(run_dir)]
    return (
        f"checkpoint step-{step} could not be written to {checkpoints_dir(run_dir)}: {reason} "
        f"({free} bytes free); complete checkpoints kept intact: {kept or 'none'}"
    )


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the `keep` latest complete checkpoints, and leftovers of interrupted writes."""
    root = checkpoints_dir(run_dir)
    for stale in root.glob(".step-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
