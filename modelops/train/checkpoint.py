"""Resumable checkpoints in `run_dir/checkpoints/step-N/`, each written whole or not at all.

A checkpoint holds the trainable weights (safetensors: the adapter and new head under PEFT, every
weight otherwise), the optimizer, scheduler and gradient-scaler states, every process's RNG
states and the loop's position (`trainer_state.json`: step, epoch, batches consumed in the
epoch, best metric so far). It is written to `.step-N.tmp/`, marked `COMPLETE` and renamed into
place, so a run killed while writing leaves no half checkpoint behind; resume looks only at
complete ones. Everything but the weights and JSON is read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import JobError
from modelops.io import write_json

COMPLETE = "COMPLETE"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"


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


def save_checkpoint(accelerator, model, optimizer, scheduler, state: LoopState, run_dir: Path, keep: int) -> Path:
    """Write `checkpoints/step-N/` (all processes call this; the main one writes the shared parts)."""
    import torch
    from safetensors.torch import save_file

    root = checkpoints_dir(run_dir)
    final = root / f"step-{state.step}"
    if (final / COMPLETE).exists():
        return final
    tmp = root / f".step-{state.step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        if accelerator.is_main_process:
            save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / WEIGHTS_FILE))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            if accelerator.scaler is not None:
                torch.save(accelerator.scaler.state_dict(), tmp / "scaler.pt")
            write_json(tmp / STATE_FILE, asdict(state))
        torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    except Exception as exc:
        # A failed write (a full disk, say) leaves nothing behind and frees what it took.
        free = shutil.disk_usage(root).free
        shutil.rmtree(tmp, ignore_errors=True)
        raise JobError(_write_failure(run_dir, state.step, exc, free)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / COMPLETE).write_text(f"{state.step}\n")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of the same step
        os.replace(tmp, final)
        prune(run_dir, keep)
    accelerator.wait_for_everyone()
    return final


def _write_failure(run_dir: Path, step: int, exc: Exception, free: int) -> str:
    # torch.save reports a full disk as an opaque "unexpected pos" error: say what happened.
    full = getattr(exc, "errno", None) == 28 or free < 1 << 20
    reason = "no space left on device" if full else (getattr(exc, "strerror", None) or str(exc))
    kept = [p.name for p in complete_checkpoints(run_dir)]
    return (
        f"checkpoint step-{step} could not be written to {checkpoints_dir(run_dir)}: {reason} "
        f"({free} bytes free); complete checkpoints kept intact: {kept or 'none'}"
    )


def load_checkpoint(path: Path, accelerator, model, optimizer, scheduler) -> LoopState:
    """Restore weights, optimizer, scheduler, scaler and this process's RNG; return the loop state."""
    import json

    import torch

    load_trainable(accelerator.unwrap_model(model), path / WEIGHTS_FILE)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if accelerator.scaler is not None and (path / "scaler.pt").exists():
        accelerator.scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=True))
    rng = path / f"rng-{accelerator.process_index}.pt"
    if not rng.exists():
        raise JobError(f"{path}: no RNG state for process {accelerator.process_index} (other process count?)")
    _set_rng_state(torch.load(rng, weights_only=True))
    return LoopState(**json.loads((path / STATE_FILE).read_text()))


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the `keep` latest complete checkpoints, and leftovers of interrupted writes."""
    root = checkpoints_dir(run_dir)
    for stale in root.glob(".step-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
