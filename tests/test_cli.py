"""`python -m modelops`: the real entrypoint in a subprocess, as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "modelops", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_default_recipe_runs_and_prints_a_summary(tmp_path):
    proc = _cli(["+recipe=lora_small", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fine_tuned" in proc.stdout and "accuracy" in proc.stdout
    run_dirs = list((tmp_path / "outputs").glob("????-??-??/*"))
    assert len(run_dirs) == 1
    run_dir = run_dirs[0]
    model_lines = [line for line in proc.stdout.splitlines() if line.startswith("model: ")]
    assert len(model_lines) == 1
    assert Path(model_lines[0].removeprefix("model: ")).resolve() == (run_dir / "model").resolve()
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "job.json", "eval.json", "metrics.jsonl"):
        assert (run_dir / name).exists(), name


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("+trainer.learnig_rate=0.1", "trainer.learnig_rate"),
        ("trainer.epochs=three", "trainer.epochs"),
        ("trainer.learning_rate=-1", "trainer.learning_rate"),
        ("trainer.no_such_key=1", "no_such_key"),
    ],
)
def test_bad_override_names_the_key_without_traceback(tmp_path, override, key):
    proc = _cli(["+recipe=lora_small", override], tmp_path)
    assert proc.returncode != 0
    assert key in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_recipe_is_reported(tmp_path):
    proc = _cli(["+recipe=no_such_recipe"], tmp_path)
    assert proc.returncode != 0
    assert "no_such_recipe" in proc.stderr
    assert "lora_small" in proc.stderr  # Hydra lists the available options


def test_a_run_dir_the_user_names_is_honoured_anywhere(tmp_path):
    scratch = tmp_path / "scratch" / "me" / "run1"  # absolute, outside outputs/
    (tmp_path / "cwd").mkdir()
    proc = _cli(["+recipe=lora_small", f"hydra.run.dir={scratch}", "stages=[sanitize]", *TINY], tmp_path / "cwd")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (scratch / "data" / "sanitize_report.json").exists() and (scratch / ".hydra" / "config.yaml").exists()
    # outputs/ holds the MLflow store (tracking.uri's default), but no run directory
    assert not list((tmp_path / "cwd" / "outputs").glob("????-??-??"))


@pytest.mark.parametrize(("key", "value"), [("hydra.sweep.subdir", "../../escaped"), ("hydra.job.name", "/tmp/x")])
def test_names_from_config_cannot_leave_their_directory(tmp_path, key, value):
    proc = _cli(["+recipe=lora_small", f"{key}={value}"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert key in proc.stderr and "parent directory" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_mistyped_key_without_plus_gets_a_did_you_mean_and_exit_2(tmp_path):
    proc = _cli(["+recipe=lora_small", "trainer.learnig_rate=1e-3"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "trainer.learnig_rate: unknown key (did you mean 'learning_rate'?)" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())  # no run directory


def test_a_mistyped_key_in_a_sweep_is_caught_before_any_job(tmp_path):
    proc = _cli(["-m", "+recipe=lora_small", "trainer.learning_rate=1e-4,3e-4", "trainer.epoch=1,2"], tmp_path)
    assert proc.returncode == 2 and "trainer.epoch: unknown key (did you mean 'epochs'?)" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_missing_model_directory_is_named_before_any_data_work(tmp_path):
    proc = _cli(["+recipe=lora_small", f"model.name_or_path={tmp_path / 'no-such-model'}"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"model.name_or_path: '{tmp_path / 'no-such-model'}': no such local directory" in proc.stderr
    assert "Evaluator" not in proc.stderr and "normalize" not in proc.stdout  # no sanitizing happened
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_run_dir_inside_outputs_is_allowed(tmp_path):
    proc = _cli(["+recipe=lora_small", "hydra.run.dir=outputs/named-run", "stages=[sanitize]", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "outputs" / "named-run" / "data" / "sanitize_report.json").exists()


def test_two_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "modelops", "+recipe=lora_small", "stages=[sanitize]", *TINY]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    assert all(p.wait(timeout=300) == 0 for p in procs)
    runs = sorted((tmp_path / "outputs").glob("????-??-??/*"))
    assert len(runs) == 2
    for run_dir in runs:
        assert (run_dir / "data" / "sanitize_report.json").exists()
        assert json.loads((run_dir / "job.json").read_text())["status"] == "succeeded"


def test_preview_stage_prints_examples_without_training(tmp_path):
    proc = _cli(["+recipe=sft_tiny", "stages=[preview]"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens carry loss" in proc.stdout and "[[" in proc.stdout
    (run_dir,) = list((tmp_path / "outputs").glob("????-??-??/*"))
    assert (run_dir / "data" / "train_preview.txt").exists()
    assert not (run_dir / "model").exists()
