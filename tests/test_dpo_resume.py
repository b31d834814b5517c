"""DPO resume: a resumed (or SIGKILLed and resumed) run ends with the weights of an uninterrupted one."""

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

from modelops.train.checkpoint import complete_checkpoints

ROOT = Path(__file__).resolve().parents[1]
# LoRA with dropout (the reference is the adapter-disabled base), shuffled pairs, warmup, gradient
# accumulation and two epochs: every kind of state a resume must restore.
LORA = {"_target_": "peft.LoraConfig", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"]}  # fmt: skip
MODEL = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": "tiny-llama", "task": "causal_lm",
         "max_length": 48, "peft": LORA}  # fmt: skip
TRAINER = {"objective": "dpo", "epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 2, "learning_rate": 3e-3,
           "warmup_ratio": 0.2, "log_every": 1, "seed": 3, "preview_examples": 0}  # fmt: skip


def _dataset(n: int = 40):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import preference_demo

    return Dataset({"train": preference_demo(n=n, seed=2, validation=0, test=0)["train"]}, format="preference")


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "adapter_model.safetensors"))


def _max_diff(a, b) -> float:
    assert set(a) == set(b) and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _train_in_process(run_dir: Path, dataset, **options):
    from peft import LoraConfig

    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    lora = LoraConfig(**{k: v for k, v in LORA.items() if k != "_target_"})
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=48, peft=lora)
    config = TrainConfig(**{**TRAINER, "cache_dir": str(run_dir.parent / "cache"), **options})
    return train(spec, dataset, config, run_dir)


def test_dpo_resume_mid_epoch_is_exact_and_rewards_are_logged(tmp_path):
    dataset = _dataset(24)  # 12 batches of 2 pairs, 6 steps of 2 batches per epoch, 12 steps
    full = tmp_path / "full"
    result = _train_in_process(full, dataset, checkpoint_every=4, keep_checkpoints=10)
    assert result.steps == 12
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                 "logps/chosen", "logps/rejected"):  # fmt: skip
        assert all(name in row for row in rows), name
    assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"]
    resumed = tmp_path / "from-4"
    shutil.copytree(full / "checkpoints" / "step-4", resumed / "checkpoints" / "step-4")
    assert _train_in_process(resumed, dataset, checkpoint_every=4).resumed_from.endswith("step-4")
    assert _max_diff(_adapter(resumed), _adapter(full)) == 0.0


def _start(run_dir: Path, dataset, **options):
    from modelops import FineTuningJob

    job = FineTuningJob(model=MODEL, dataset=dataset, output_dir=run_dir, **{**TRAINER, **options})
    return job.start()


def _resume_worker(run_dir: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "modelops.run", str(run_dir)]
    return subprocess.run(command, env=env, capture_output=True, timeout=600).returncode


@pytest.mark.slow
def test_dpo_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path):
    full = _start(tmp_path / "full", _dataset(), checkpoint_every=3)
    assert full.wait(timeout=600) == "succeeded", full.error
    job = _start(tmp_path / "run", _dataset(), checkpoint_every=3)
    deadline = time.monotonic() + 300
    while not complete_checkpoints(job.run_dir):
        assert job.status in ("queued", "validating", "running"), job.error
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(job._read()["pid"], signal.SIGKILL)
    assert job.wait(timeout=60) == "failed"  # died without a word
    killed_at = int(complete_checkpoints(job.run_dir)[-1].name[5:])
    assert killed_at < 20 and killed_at % 10  # before the end, inside an epoch (10 steps each)
    assert _resume_worker(job.run_dir) == 0
    doc = json.loads((job.run_dir / "job.json").read_text())
    assert doc["status"] == "succeeded"
    assert any(e["message"] == "resumed" and e["step"] == killed_at for e in doc["events"])
    assert _max_diff(_adapter(job.run_dir), _adapter(full.run_dir)) == 0.0
