"""Two CPU processes over gloo (torchrun / accelerate launch) run one recipe into one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.distributed import strip_local_rank

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "+recipe=lora_small", "dataset.n_train=256", "dataset.n_validation=8", "dataset.n_test=64",
    "trainer.learning_rate=2e-3", "trainer.warmup_ratio=0.0", "trainer.log_every=1", "trainer.epochs=3",
]  # fmt: skip


def _launch(prefix: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*prefix, "-m", "modelops", *TINY, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _only_run_dir(cwd: Path) -> Path:
    runs = list((cwd / "outputs").glob("????-??-??/*"))
    assert len(runs) == 1, runs  # all ranks agreed on one directory
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher",
    [
        # The launchers of this environment (`torchrun`, `accelerate launch`), whatever is on PATH.
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"],
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
        ],
    ],
    ids=["torchrun", "accelerate"],
)
def test_two_processes_share_one_run_dir_and_track_single_process_loss(tmp_path, launcher):
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    # The same global batch: 1 process x 16 rows and 2 processes x 8 rows.
    _launch([sys.executable], ["trainer.batch_size=16"], single)
    proc = _launch(launcher, ["trainer.batch_size=8"], double)
    run_dir = _only_run_dir(double)
    assert (run_dir / ".hydra" / "config.yaml").exists()
    job = json.loads((run_dir / "job.json").read_text())
    assert job["status"] == "succeeded"
    one, two = _losses(_only_run_dir(single)), _losses(run_dir)
    assert len(one) == len(two)  # one metrics line per step: only the main process writes
    assert sum(two[-4:]) / 4 < 0.5 * sum(two[:4]) / 4  # it learns
    window = max(1, len(one) // 4)
    for start in range(0, len(one), window):  # and tracks the single-process curve
        a, b = one[start : start + window], two[start : start + window]
        assert abs(sum(a) / len(a) - sum(b) / len(b)) < 0.15
    assert proc.stdout.count("run directory:") == 1


def test_local_rank_arguments_are_taken_out_of_hydra_argv(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "")  # so that the test's own value is undone afterwards
    monkeypatch.delenv("LOCAL_RANK")
    argv = ["modelops", "--local_rank=1", "+recipe=lora_small", "--local-rank", "1", "trainer.seed=3"]
    assert strip_local_rank(argv) == ["modelops", "+recipe=lora_small", "trainer.seed=3"]
    assert os.environ["LOCAL_RANK"] == "1"


@pytest.mark.slow
def test_fine_tuning_job_launches_several_processes_through_accelerate(tmp_path):
    from modelops import FineTuningJob
    from modelops.data.demo_formats import instruction_demo

    job = FineTuningJob(model="tiny_llama", dataset=instruction_demo(n=80), epochs=1, batch_size=4,
                        learning_rate=1e-3, output_dir=tmp_path / "run", num_processes=2, log_every=1)  # fmt: skip
    job.start()
    assert job.wait(timeout=600) == "succeeded", job.error + (tmp_path / "run" / "train.log").read_text()[-2000:]
    started = next(e for e in job.events if e["message"] == "training started")
    assert started["processes"] == 2
    steps = [json.loads(line)["step"] for line in (job.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one line per step: only the main process wrote
    assert (job.run_dir / "model" / "model.safetensors").exists()
