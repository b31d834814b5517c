"""A run directory holds one run: another config is refused (or moved aside on request), the same config resumes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.errors import ConfigError, JobError
from modelops.rundir import claim, config_key, run_dir_override

ROOT = Path(__file__).resolve().parents[1]


def _run(directory: Path, key: str, status: str = "succeeded") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "job.json").write_text(json.dumps({"status": status, "created_at": "then", "config_key": key}))
    (directory / "eval.json").write_text('{"fine_tuned": {"metrics": {"accuracy": 0.9}}}\n')


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


def test_config_key_ignores_resume_and_overwrite_only():
    base = {"trainer": {"lr": 1e-3, "resume": "auto"}, "overwrite": False}
    assert config_key(base) == config_key({"trainer": {"lr": 1e-3, "resume": "/x/step-4"}, "overwrite": True})
    assert config_key(base) != config_key({"trainer": {"lr": 2e-3, "resume": "auto"}, "overwrite": False})


def test_an_empty_or_new_directory_is_free(tmp_path):
    assert claim(tmp_path / "new", "k").resumed is False
    (tmp_path / "hydra-only" / ".hydra").mkdir(parents=True)
    assert claim(tmp_path / "hydra-only", "k").moved_to is None


def test_the_same_config_resumes_and_another_is_refused_with_what_to_do(tmp_path):
    run_dir = tmp_path / "r"
    _run(run_dir, "a", status="failed")
    assert claim(run_dir, "a").resumed
    before = _digest(run_dir)
    with pytest.raises(ConfigError) as info:
        claim(run_dir, "b")
    message = str(info.value)
    for text in (str(run_dir), "status failed", "another config", "same config", "another directory",
                 "overwrite=true", "not deleted"):  # fmt: skip
        assert text in message, message
    assert _digest(run_dir) == before


def test_overwrite_renames_the_old_run_and_keeps_every_file(tmp_path):
    run_dir = tmp_path / "r"
    _run(run_dir, "a")
    before = _digest(run_dir)
    found = claim(run_dir, "b", overwrite=True)
    assert found.moved_to is not None and found.moved_to.name.startswith("r.old-")
    assert not run_dir.exists() and _digest(found.moved_to) == before
    _run(run_dir, "c")
    second = claim(run_dir, "d", overwrite=True)  # a second move in the same second gets its own name
    assert second.moved_to != found.moved_to and found.moved_to.exists()


def test_a_run_without_a_config_key_is_another_config(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "job.json").write_text('{"status": "succeeded"}')
    with pytest.raises(ConfigError, match="cannot compare"):
        claim(run_dir, "a")


def test_run_dir_override_takes_the_last_one():
    assert run_dir_override(["x", "hydra.run.dir=a", "hydra.run.dir='b c'"]) == "b c"
    assert run_dir_override(["x", "trainer.epochs=1"]) is None


def test_a_job_does_not_start_in_a_directory_holding_another_job(tmp_path):
    from modelops import Dataset, FineTuningJob

    dataset = Dataset.from_records([{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
    run_dir = tmp_path / "job"
    _run(run_dir, "someone else's")
    before = _digest(run_dir)
    job = FineTuningJob(model="minilm_cls", dataset=dataset, output_dir=run_dir, tracking="none", max_steps=1)
    with pytest.raises(JobError, match="overwrite=True"):
        job.start()
    assert _digest(run_dir) == before and job._process is None


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "modelops", "+recipe=lora_small", "tracking=none",
                           "stages=[sanitize]", "hydra.run.dir=outputs/r", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_cli_refuses_a_reused_run_dir_before_writing_and_overwrite_moves_it_aside(tmp_path):
    first = _cli([], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "outputs" / "r"
    before = _digest(run_dir)
    other = _cli(["sanitizer=strict"], tmp_path)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "outputs/r" in other.stderr and "overwrite=true" in other.stderr
    assert _digest(run_dir) == before  # not even Hydra's .hydra/ nor the log changed
    again = _cli([], tmp_path)  # the same config: that run continues
    assert again.returncode == 0, again.stderr[-2000:]
    moved = _cli(["sanitizer=strict", "overwrite=true"], tmp_path)
    assert moved.returncode == 0, moved.stderr[-2000:]
    (old,) = list((tmp_path / "outputs").glob("r.old-*"))
    assert json.loads((old / "job.json").read_text())["status"] == "succeeded"
    assert "strict" not in (old / ".hydra" / "overrides.yaml").read_text()
    assert "strict" in (run_dir / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_the_pipeline_refuses_another_config_and_a_restart_sets_the_old_curve_aside(tmp_path):
    from modelops.config.build import compose
    from modelops.run import run
    from tests.conftest import TINY

    run_dir = tmp_path / "run"
    base = ["+recipe=lora_small", *TINY, "tracking=none", "stages=[train]", "trainer.max_steps=2",
            "trainer.log_every=1"]  # fmt: skip
    run(compose(base), run_dir)
    first = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="another config"):
        run(compose([*base, "trainer.learning_rate=1e-3"]), run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == first
    # The same config, started over (resume=null is not part of the key): the old curve is kept beside.
    run(compose([*base, "trainer.resume=null"]), run_dir)
    (old,) = run_dir.glob("metrics.jsonl.old-*")
    assert old.read_text() == first
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one training: no step twice
    record = json.loads((run_dir / "job.json").read_text())
    assert record["status"] == "succeeded" and record["error"] is None
