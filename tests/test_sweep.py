"""Hydra multirun sweeps: basic, joblib and Optuna; one directory per trial; the sweep summary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.sweep import flatten_results, summarize

ROOT = Path(__file__).resolve().parents[1]
TINY_SWEEP = [
    "+recipe=lora_small", "dataset.n_train=64", "dataset.n_validation=8", "dataset.n_test=32",
    "trainer.max_steps=2", "trainer.batch_size=8",
]  # fmt: skip


def _multirun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "modelops", "-m", *TINY_SWEEP, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _sweep_dir(cwd: Path) -> Path:
    (sweep,) = list((cwd / "outputs" / "multirun").glob("*/*"))
    return sweep


def _check_trials(sweep: Path, expected: int) -> list[Path]:
    trials = sorted(p.parent.parent for p in sweep.glob("*/.hydra/overrides.yaml"))
    assert len(trials) == expected
    for trial in trials:
        assert json.loads((trial / "job.json").read_text())["status"] == "succeeded"
        assert (trial / "model" / "adapter_model.safetensors").exists()
        assert json.loads((trial / "eval.json").read_text())["fine_tuned"]["metrics"]["accuracy"] >= 0
    return trials


@pytest.mark.slow
def test_basic_multirun_grid_and_summary(tmp_path):
    _multirun(["trainer.learning_rate=1e-4,3e-3", "model.peft.r=4,8"], tmp_path)
    sweep = _sweep_dir(tmp_path)
    trials = _check_trials(sweep, 4)
    seen = {(t / ".hydra" / "overrides.yaml").read_text() for t in trials}
    assert len(seen) == 4  # every combination ran, each in its own directory
    with open(sweep / "sweep_summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model.peft.r"] for r in rows} == {"4", "8"}
    objective = [float(r["fine_tuned.accuracy"]) for r in rows]
    assert objective == sorted(objective, reverse=True)
    assert (sweep / "sweep_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "fine_tuned.accuracy" in (sweep / "sweep_summary.md").read_text()


@pytest.mark.slow
def test_joblib_launcher_runs_trials_in_parallel_processes(tmp_path):
    _multirun(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.learning_rate=1e-4,3e-3",
               "model.peft.r=4,8"], tmp_path)  # fmt: skip
    trials = _check_trials(_sweep_dir(tmp_path), 4)
    pids = {json.loads((t / "job.json").read_text()).get("pid") for t in trials}
    assert len(trials) == 4 and pids


@pytest.mark.slow
def test_optuna_sweeper_optimises_the_configured_objective(tmp_path):
    proc = _multirun(["hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.direction=maximize",
                      "trainer.learning_rate=interval(1e-4,1e-2)", "objective=fine_tuned.f1"], tmp_path)  # fmt: skip
    sweep = _sweep_dir(tmp_path)
    trials = _check_trials(sweep, 3)
    values = [json.loads((t / "eval.json").read_text())["fine_tuned"]["metrics"]["f1"] for t in trials]
    best_line = next(line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "Best value" in line)
    assert float(best_line.rsplit(":", 1)[1]) == pytest.approx(max(values))


def test_submitit_slurm_launcher_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from modelops.config.paths import conf_dir
    from modelops.config.recipes import register_recipes

    register_recipes()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for launcher in ("submitit_slurm", "slurm_gpu"):
            cfg = compose("config", overrides=["+recipe=lora_small", f"hydra/launcher={launcher}"],
                          return_hydra_config=True)  # fmt: skip
            assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
        assert cfg.hydra.launcher.gpus_per_node == 1


def _fake_trial(sweep: Path, name: str, overrides: list[str], results: dict) -> None:
    trial = sweep / name
    (trial / ".hydra").mkdir(parents=True)
    (trial / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (trial / "eval.json").write_text(json.dumps(results))


def test_summary_sorts_by_objective_and_direction(tmp_path):
    for i, (lr, acc) in enumerate([(0.1, 0.7), (0.01, 0.9), (0.001, 0.8)]):
        _fake_trial(tmp_path, str(i), ["+recipe=lora_small", f"trainer.learning_rate={lr}", "trainer.epochs=1"],
                    {"fine_tuned": {"metrics": {"accuracy": acc, "f1": 1 - acc}}})  # fmt: skip
    best_first = summarize(tmp_path, "fine_tuned.accuracy", "maximize")
    assert [t["metrics"]["fine_tuned.accuracy"] for t in best_first] == [0.9, 0.8, 0.7]
    lowest_first = summarize(tmp_path, "fine_tuned.f1", "minimize")
    assert [t["trial"] for t in lowest_first] == ["1", "2", "0"]
    header = (tmp_path / "sweep_summary.csv").read_text().splitlines()[0].split(",")
    assert "trainer.learning_rate" in header and "trainer.epochs" not in header  # only swept keys


def test_sweep_command_on_a_directory(tmp_path):
    _fake_trial(tmp_path, "0", ["model.peft.r=4"], {"fine_tuned": {"metrics": {"accuracy": 0.5}}})
    _fake_trial(tmp_path, "1", ["model.peft.r=8"], {"fine_tuned": {"metrics": {"accuracy": 0.6}}})
    proc = subprocess.run([sys.executable, "-m", "modelops.sweep", str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| 1") or line.startswith("| 0")]
    assert lines[0].startswith("| 1")  # best trial first


def test_flatten_results_keeps_numbers_only():
    flat = flatten_results({"base": {"metrics": {"accuracy": 0.5, "confusion_matrix": [[1]]}}, "train": {"steps": 3}})
    assert flat == {"base.accuracy": 0.5, "train.steps": 3.0}
