"""Checkpoints and resume: a resumed run ends with exactly the weights of an uninterrupted one (on CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops.errors import JobError
from modelops.models.spec import ModelSpec
from modelops.train.checkpoint import COMPLETE, complete_checkpoints, resolve_resume
from modelops.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# LoRA with dropout, shuffled data, warmup and two epochs: every kind of state a resume must restore.
LORA = {"_target_": "peft.LoraConfig", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"]}  # fmt: skip
MODEL = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": "tiny-llama", "task": "causal_lm",
         "max_length": 96, "peft": LORA}  # fmt: skip
TRAINER = {"epochs": 2, "batch_size": 4, "learning_rate": 3e-3, "warmup_ratio": 0.2, "log_every": 1, "seed": 3}


def _dataset(n: int = 40):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    return Dataset({"train": instruction_demo(n=120, seed=2)["train"].select(range(n))}, format="instruction")


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "adapter_model.safetensors"))


def _max_diff(a, b) -> float:
    assert set(a) == set(b) and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _train_in_process(run_dir: Path, dataset, **options):
    from peft import LoraConfig

    from modelops.train.loop import train

    lora = LoraConfig(**{k: v for k, v in LORA.items() if k != "_target_"})
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=96, peft=lora)
    config = TrainConfig(**{**TRAINER, "cache_dir": str(run_dir.parent / "cache"), "preview_examples": 0, **options})
    return train(spec, dataset, config, run_dir)


def test_resume_from_mid_epoch_and_after_an_epoch_boundary_is_exact(tmp_path):
    dataset = _dataset(24)  # 6 batches per epoch, 12 steps
    full = tmp_path / "full"
    _train_in_process(full, dataset, checkpoint_every=4, keep_checkpoints=10)
    assert [p.name for p in complete_checkpoints(full)] == ["step-4", "step-8", "step-12"]
    for step in (4, 8):  # 4: mid-epoch 0; 8: mid-epoch 1, after the boundary
        resumed = tmp_path / f"from-{step}"
        shutil.copytree(full / "checkpoints" / f"step-{step}", resumed / "checkpoints" / f"step-{step}")
        result = _train_in_process(resumed, dataset, checkpoint_every=4)
        assert result.resumed_from.endswith(f"step-{step}")
        assert _max_diff(_adapter(resumed), _adapter(full)) == 0.0


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    dataset = _dataset(16)
    _train_in_process(tmp_path / "a", dataset, max_steps=2, checkpoint_every=2)
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints")
    with pytest.raises(JobError, match=r"different run \(batch_size: 4 -> 2"):
        _train_in_process(tmp_path / "b", dataset, max_steps=2, batch_size=2)


def test_only_complete_checkpoints_are_resumed(tmp_path):
    for step, complete in ((3, True), (6, True), (9, False)):
        path = tmp_path / "checkpoints" / f"step-{step}"
        path.mkdir(parents=True)
        if complete:
            (path / COMPLETE).write_text(str(step))
    assert resolve_resume("auto", tmp_path).name == "step-6"
    assert resolve_resume(None, tmp_path) is None
    with pytest.raises(JobError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoints" / "step-9"), tmp_path)


# -- a separate training process, killed and resumed -------------------------------------------


def _start(run_dir: Path, dataset, **options):
    from modelops import FineTuningJob

    job = FineTuningJob(model=MODEL, dataset=dataset, output_dir=run_dir, **{**TRAINER, **options})
    return job.start()


def _resume_worker(run_dir: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "modelops.run", str(run_dir)]
    return subprocess.run(command, env=env, capture_output=True, timeout=600).returncode


def _wait_for_checkpoint(job, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not complete_checkpoints(job.run_dir):
        assert job.status in ("queued", "validating", "running"), job.error
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    job = _start(run_dir, _dataset(), checkpoint_every=3)
    assert job.wait(timeout=600) == "succeeded", job.error
    return _adapter(run_dir)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path, uninterrupted):
    job = _start(tmp_path / "run", _dataset(), checkpoint_every=3)
    _wait_for_checkpoint(job)
    os.kill(job._read()["pid"], signal.SIGKILL)
    assert job.wait(timeout=60) == "failed"  # died without a word
    killed_at = int(complete_checkpoints(job.run_dir)[-1].name[5:])
    assert killed_at < 20 and killed_at % 10  # before the end, inside an epoch (10 steps each)
    assert _resume_worker(job.run_dir) == 0
    doc = json.loads((job.run_dir / "job.json").read_text())
    assert doc["status"] == "succeeded"
    assert any(e["message"] == "resumed" and e["step"] == killed_at for e in doc["events"])
    assert _max_diff(_adapter(job.run_dir), uninterrupted) == 0.0


@pytest.mark.slow
def test_sigterm_checkpoints_and_cancels_then_resume_gives_the_same_weights(tmp_path, uninterrupted):
    job = _start(tmp_path / "run", _dataset(), checkpoint_every=1000)
    deadline = time.monotonic() + 300
    while job.progress == 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    job.cancel()
    assert job.wait(timeout=120) == "cancelled"
    saved = complete_checkpoints(job.run_dir)
    assert len(saved) == 1 and "checkpoint at step" in job.error
    assert _resume_worker(job.run_dir) == 0
    assert json.loads((job.run_dir / "job.json").read_text())["status"] == "succeeded"
    assert _max_diff(_adapter(job.run_dir), uninterrupted) == 0.0
