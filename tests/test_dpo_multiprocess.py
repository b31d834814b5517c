"""DPO in two CPU processes over gloo (torchrun): one run directory, rewards reduced over both processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dpo_two_processes_train_and_log_rewards(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["+recipe=dpo_tiny", "dataset.n=80", "trainer.epochs=1", "trainer.batch_size=4", "trainer.log_every=1",
            "stages=[train]", "hydra.run.dir=outputs/dpo"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "modelops", *args]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "dpo"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8  # 64 train pairs / (2 processes x 4) per step
    for row in rows:
        assert 0.0 <= row["rewards/accuracies"] <= 1.0 and row["logps/chosen"] < 0
        # over 8 pairs of 2 processes: a multiple of 1/8 (one process alone would give multiples of 1/4)
        assert abs(row["rewards/accuracies"] * 8 - round(row["rewards/accuracies"] * 8)) < 1e-6
    assert any(abs(r["rewards/accuracies"] * 4 - round(r["rewards/accuracies"] * 4)) > 1e-6 for r in rows)
    job = json.loads((run_dir / "job.json").read_text())
    assert job["status"] == "succeeded" and (run_dir / "model" / "modelops.json").exists()
