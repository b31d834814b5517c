"""Checkpoints through Accelerate with two processes: SIGKILL both mid-training, resume, same weights.

The checkpoint is written by `Accelerator.save_state` on every process (one RNG file each) and made
complete by the main one; a resumed 2-process run must end exactly where an uninterrupted one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops.train.checkpoint import COMPLETE, complete_checkpoints

ROOT = Path(__file__).resolve().parents[1]
LORA = {"_target_": "peft.LoraConfig", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"]}  # fmt: skip
MODEL = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": "tiny-llama", "task": "causal_lm",
         "max_length": 96, "peft": LORA}  # fmt: skip
# 48 rows, 4 per process and batch: 6 steps an epoch, 12 in all; checkpoints at 4 (mid-epoch 0) and 8.
TRAINER = {"epochs": 2, "batch_size": 4, "learning_rate": 3e-3, "warmup_ratio": 0.2, "log_every": 1, "seed": 3,
           "checkpoint_every": 4, "keep_checkpoints": 10, "preview_examples": 0}  # fmt: skip
LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def _dataset():
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    return Dataset({"train": instruction_demo(n=120, seed=2)["train"].select(range(48))}, format="instruction")


def _start(run_dir: Path):
    from modelops import FineTuningJob

    options = {**TRAINER, "cache_dir": str(run_dir.parent / "cache")}
    return FineTuningJob(model=MODEL, dataset=_dataset(), output_dir=run_dir, num_processes=2, **options).start()


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "adapter_model.safetensors"))


def _kill_all(launcher: int) -> None:
    """SIGKILL the launcher and every process under it (the workers run in their own process group)."""
    import psutil

    processes = [psutil.Process(launcher), *psutil.Process(launcher).children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=30)


@pytest.mark.slow
def test_two_processes_killed_mid_epoch_resume_to_the_weights_of_an_uninterrupted_run(tmp_path):
    reference = _start(tmp_path / "reference")
    assert reference.wait(timeout=900) == "succeeded", reference.error
    job = _start(tmp_path / "run")
    deadline = time.monotonic() + 600
    while not complete_checkpoints(job.run_dir):
        assert job.status in ("queued", "validating", "running"), job.error
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    _kill_all(job._process.pid)
    assert job.wait(timeout=60) == "failed"
    saved = complete_checkpoints(job.run_dir)[-1]
    assert saved.name == "step-4" and (saved / COMPLETE).exists()
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in saved.iterdir()}  # one per process
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *LAUNCH, "-m", "modelops.run", str(job.run_dir)], env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job.status == "succeeded"
    assert any(e["message"] == "resumed" and e["step"] == 4 for e in job.events)
    expected, got = _adapter(reference.run_dir), _adapter(job.run_dir)
    assert set(got) == set(expected) and got
    assert max(float((got[k] - expected[k]).abs().max()) for k in got) == 0.0
