"""Faults: kills at several points (one during a checkpoint write), a full disk, readers racing the
writer of job.json, two jobs at once, and seeds that decide everything.

Training runs here are full fine-tunes of the tiny Llama (every weight and both Adam moments are in
each checkpoint, so writes take long enough to be caught in the act), run as separate processes.
"""

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

from modelops.train.checkpoint import COMPLETE, complete_checkpoints

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": "tiny-llama", "task": "causal_lm",
         "max_length": 96, "peft": None}  # fmt: skip
TRAINER = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.2, "log_every": 1, "seed": 5,
           "checkpoint_every": 2, "keep_checkpoints": 100, "preview_examples": 0}  # fmt: skip
STEPS_PER_EPOCH = 8  # 32 rows / batch 4


def _dataset():
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    return Dataset({"train": instruction_demo(n=120, seed=4)["train"].select(range(32))}, format="instruction")


def _start(run_dir: Path, **options):
    from modelops import FineTuningJob

    options = {**TRAINER, "cache_dir": str(run_dir.parent / "cache"), **options}
    return FineTuningJob(model=MODEL, dataset=_dataset(), output_dir=run_dir, **options).start()


def _resume(run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "modelops.run", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _weights(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "model.safetensors"))


def _same(a, b) -> bool:
    return set(a) == set(b) and all(bool((a[k] == b[k]).all()) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    job = _start(run_dir)
    assert job.wait(timeout=600) == "succeeded", job.error
    return run_dir, _weights(run_dir)


def _pid(job) -> int:
    deadline = time.monotonic() + 120
    while not job._read().get("pid"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return job._read()["pid"]


def _kill_when(job, ready) -> None:
    """SIGKILL the training process as soon as `ready()` is true (polled in a tight loop)."""
    pid, deadline = _pid(job), time.monotonic() + 300
    while not ready():
        assert job.status in ("queued", "validating", "running"), f"finished before the kill point: {job.error}"
        assert time.monotonic() < deadline, "kill point never reached"
    os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=60) == "failed"


def _temp_checkpoint(run_dir: Path) -> bool:
    root = run_dir / "checkpoints"
    return root.is_dir() and any(e.name.endswith(".tmp") for e in os.scandir(root))


def _progressed(job, steps: int):
    def ready() -> bool:
        return job.progress * (2 * STEPS_PER_EPOCH) >= steps

    return ready


KILL_POINTS = {
    "after_the_first_step": lambda job: _progressed(job, 1),
    "mid_first_epoch": lambda job: lambda: len(complete_checkpoints(job.run_dir)) >= 2,  # step 4 of 8
    "at_the_epoch_boundary": lambda job: lambda: any(p.name == "step-8" for p in complete_checkpoints(job.run_dir)),
    "mid_second_epoch": lambda job: _progressed(job, 13),
    "while_writing_a_checkpoint": lambda job: lambda: _temp_checkpoint(job.run_dir),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_ends_with_identical_weights(tmp_path, reference, point):
    _, expected = reference
    job = _start(tmp_path / "run")
    _kill_when(job, KILL_POINTS[point](job))
    # Whatever was left half-written is never taken for a checkpoint.
    for path in complete_checkpoints(job.run_dir):
        assert (path / COMPLETE).exists() and (path / "model.safetensors").exists()
    proc = _resume(job.run_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((job.run_dir / "job.json").read_text())
    assert doc["status"] == "succeeded"
    assert _same(_weights(job.run_dir), expected)
    assert not _temp_checkpoint(job.run_dir)


@pytest.mark.slow
def test_job_json_is_always_whole_while_a_job_runs(tmp_path):
    job = _start(tmp_path / "run", checkpoint_every=1)
    path, reads, statuses = job.run_dir / "job.json", 0, set()
    while True:
        doc = json.loads(path.read_text())  # a half-written file would fail to parse here
        reads += 1
        statuses.add(doc["status"])
        if doc["status"] in ("succeeded", "failed", "cancelled"):
            break
    assert doc["status"] == "succeeded"
    assert reads > 100 and "running" in statuses


@pytest.mark.slow
def test_two_jobs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    from modelops import FineTuningJob

    monkeypatch.chdir(tmp_path)
    options = {**TRAINER, "epochs": 1, "cache_dir": str(tmp_path / "cache")}
    jobs = [FineTuningJob(model=MODEL, dataset=_dataset(), **options) for _ in range(2)]
    for job in jobs:
        job.start()
    assert jobs[0].run_dir != jobs[1].run_dir
    assert jobs[0].run_dir.parent == jobs[1].run_dir.parent
    for job in jobs:
        assert job.wait(timeout=600) == "succeeded", job.error
    assert _same(_weights(jobs[0].run_dir), _weights(jobs[1].run_dir))  # same inputs, same seed


def test_same_seed_gives_identical_curves_and_metrics_other_seeds_differ(tmp_path):
    from modelops.evaluate import Evaluator
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    data = _dataset()
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=96)

    def run(name: str, seed: int):
        config = TrainConfig(**{**TRAINER, "epochs": 1, "seed": seed, "cache_dir": str(tmp_path / "cache")})
        result = train(spec, data, config, tmp_path / name)
        losses = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        metrics = Evaluator(metrics=["loss", "perplexity"]).evaluate(result.model_dir, data, split="train").metrics
        return losses, metrics

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert first == again
    assert first[0] != other[0]


def _can_mount() -> bool:
    probe = Path("/tmp") / f"modelops-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
    if ok.returncode == 0:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("mount") or os.geteuid() != 0 or not _can_mount(), reason="needs tmpfs mounts")
def test_a_full_disk_fails_clearly_and_keeps_the_previous_checkpoint(tmp_path, reference):
    ref_dir, expected = reference
    checkpoint = sum(f.stat().st_size for f in (ref_dir / "checkpoints" / "step-2").iterdir())
    rest = sum(f.stat().st_size for f in ref_dir.rglob("*") if f.is_file() and "checkpoints" not in f.parts)
    disk = tmp_path / "disk"
    disk.mkdir()
    # Room for the run's other files and one checkpoint, not two.
    size = rest + int(1.6 * checkpoint)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True)
    try:
        job = _start(disk / "run", cache_dir=str(tmp_path / "cache"))
        assert job.wait(timeout=600) == "failed"
        assert "no space left on device" in job.error and "step-2" in job.error, job.error
        saved = complete_checkpoints(job.run_dir)
        assert [p.name for p in saved] == ["step-2"]
        assert not _temp_checkpoint(job.run_dir)  # the half-written one was cleaned up
        weights = "model.safetensors"
        assert (saved[0] / weights).read_bytes() == (ref_dir / "checkpoints" / "step-2" / weights).read_bytes()
        # Free space, resume: the run ends as if nothing had happened.
        subprocess.run(["mount", "-o", "remount,size=2g", str(disk)], check=True)
        proc = _resume(job.run_dir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert _same(_weights(job.run_dir), expected)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.skipif(not shutil.which("mount") or os.geteuid() != 0 or not _can_mount(), reason="needs tmpfs mounts")
def test_an_unwritable_output_directory_is_a_clear_error(tmp_path):
    from modelops import FineTuningJob
    from modelops.errors import JobError

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(outputs)], check=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-m", "modelops", "+recipe=lora_small", "stages=[sanitize]"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2
        assert "Read-only file system" in proc.stderr and str(outputs) in proc.stderr
        assert "Traceback" not in proc.stderr
        job = FineTuningJob(model=MODEL, dataset=_dataset(), output_dir=outputs / "job", epochs=1)
        with pytest.raises(JobError, match="cannot write the run directory"):
            job.start()
    finally:
        subprocess.run(["umount", "-l", str(outputs)], check=False)
