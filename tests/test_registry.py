"""Tracking and registry on MLflow: real runs into a real SQLite store, read back through MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.errors import ModelError
from modelops.registry.refs import Reference, parse_reference

ROOT = Path(__file__).resolve().parents[1]
#: A few optimizer steps of the default recipe, with validation so the curve has both losses.
FAST = [
    "dataset.n_train=96", "dataset.n_validation=16", "dataset.n_test=64", "trainer.batch_size=16",
    "trainer.epochs=1", "trainer.learning_rate=2e-3", "trainer.warmup_ratio=0.0", "trainer.log_every=2",
    "trainer.eval_every=3",
]  # fmt: skip


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, module: str = "modelops") -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("MODELOPS_DEBUG", None)
    if env is None or "MLFLOW_TRACKING_URI" not in env:
        full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def finished(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def client_for(db: Path):
    from modelops.registry.store import client

    return client(f"sqlite:///{db}")


def curve(run_dir: Path, key: str) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row[key] for row in rows if key in row}


# -- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sentiment", Reference("sentiment")),
        ("sentiment/3", Reference("sentiment", version=3)),
        ("sentiment@champion", Reference("sentiment", alias="champion", explicit=True)),
        ("sentiment@latest", Reference("sentiment", explicit=True)),
        ("models:/sentiment/3", Reference("sentiment", version=3, explicit=True)),
        ("models:/sentiment/latest", Reference("sentiment", explicit=True)),
        ("models:/sentiment@staging", Reference("sentiment", alias="staging", explicit=True)),
        ("org/model", None),  # a hub id
        ("./some/dir", None),
        ("/abs/path", None),
    ],
)
def test_model_references_parse(text, expected):
    assert parse_reference(text) == expected


def test_no_store_leaves_plain_references_alone(tmp_path, monkeypatch):
    from modelops.models.resolve import resolve_name_or_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_name_or_path("org/model") == "org/model"
    with pytest.raises(ModelError, match="not found"):
        resolve_name_or_path("sentiment")
    assert not (tmp_path / "outputs").exists()  # looking a name up creates no store
    with pytest.raises(ModelError, match="no registered model 'sentiment'"):
        resolve_name_or_path("sentiment@champion")


def test_tracking_options_compose_and_instantiate():
    from modelops.config.build import compose, instantiate
    from modelops.config.validate import validate
    from modelops.registry.settings import RegistryConfig, TrackingConfig

    for option, enabled in (("mlflow", True), ("none", False)):
        cfg = compose(["+recipe=lora_small", f"tracking={option}", "registry.name=sentiment"])
        validate(cfg)
        assert instantiate(cfg.tracking, "tracking") == TrackingConfig(enabled=enabled)
        assert instantiate(cfg.registry, "registry") == RegistryConfig(name="sentiment")


def test_config_flattens_to_dotted_params():
    from modelops.registry.tracker import flatten_config

    config = {"trainer": {"epochs": 1, "optimizer": {"betas": [0.9, 0.99]}}, "stages": ["train"],
              "sanitizer": {"steps": [{"_target_": "a.b", "n": 2}]}, "objective": None}  # fmt: skip
    assert flatten_config(config) == {
        "trainer.epochs": "1", "trainer.optimizer.betas": "[0.9, 0.99]", "stages": '["train"]',
        "sanitizer.steps.0._target_": "a.b", "sanitizer.steps.0.n": "2", "objective": "None",
    }  # fmt: skip


def test_loss_curve_keeps_the_last_value_of_a_step_logged_twice(tmp_path):
    from modelops.train.curve import read_curve, write_loss_curve

    rows = [{"step": 2, "loss": 0.9}, {"step": 4, "loss": 0.7}, {"step": 4, "eval_loss": 0.8},
            {"step": 4, "loss": 0.6}, {"step": 6, "loss": 0.5}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_curve(tmp_path / "metrics.jsonl", "loss") == ([2, 4, 6], [0.9, 0.6, 0.5])
    assert read_curve(tmp_path / "metrics.jsonl", "eval_loss") == ([4], [0.8])
    assert write_loss_curve(tmp_path).read_bytes()[:4] == b"\x89PNG"
    assert write_loss_curve(tmp_path / "nothing") is None


# -- bad stores: a clear error before training, exit 2, the run directory kept -----------------


def test_unreachable_server_fails_before_training_and_tracking_none_runs(tmp_path):
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens
    env = {"MLFLOW_TRACKING_URI": uri}
    code, _, err = finished(cli(["+recipe=lora_small", "hydra.run.dir=outputs/r"], tmp_path, env))
    assert code == 2, err[-2000:]
    assert uri in err and "unreachable" in err and "Traceback" not in err
    job = json.loads((tmp_path / "outputs/r/job.json").read_text())
    assert job["status"] == "failed" and uri in job["error"]
    assert not (tmp_path / "outputs/r/metrics.jsonl").exists()  # nothing was trained
    args = ["+recipe=lora_small", "tracking=none", "stages=[sanitize]", *FAST, "hydra.run.dir=outputs/s"]
    code, _, err = finished(cli(args, tmp_path, env))
    assert code == 0, err[-2000:]
    assert json.loads((tmp_path / "outputs/s/job.json").read_text())["status"] == "succeeded"


def test_fine_tuning_job_checks_its_store_when_built(tmp_path, monkeypatch):
    from modelops import FineTuningJob
    from modelops.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"tracking server http://127\.0\.0\.1:9 is unreachable.*tracking=none"):
        FineTuningJob(model="minilm_cls")
    assert FineTuningJob(model="minilm_cls", tracking="none").tracking_node["enabled"] is False
    with pytest.raises(ConfigError, match=r"tracking='mlfow' is not one of \['mlflow', 'none'\]"):
        FineTuningJob(model="minilm_cls", tracking="mlfow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    job = FineTuningJob(model="minilm_cls")
    assert job.tracking_node["uri"] == f"sqlite:///{tmp_path.resolve() / 'outputs' / 'mlflow.db'}"  # fixed when built


def test_read_only_store_is_a_clear_error(tmp_path):
    db = tmp_path / "outputs" / "mlflow.db"
    client_for(db).search_experiments()  # creates the store's tables
    db.chmod(0o444)
    code, _, err = finished(cli(["+recipe=lora_small", "hydra.run.dir=outputs/r"], tmp_path))
    assert code == 2
    assert str(db) in err and "read-only" in err and "Traceback" not in err
    assert json.loads((tmp_path / "outputs/r/job.json").read_text())["status"] == "failed"
    assert (tmp_path / "outputs/r/.hydra/config.yaml").exists()


def test_unknown_tracking_option_and_registry_key_name_the_key(tmp_path):
    code, _, err = finished(cli(["+recipe=lora_small", "+registry.nmae=x"], tmp_path))
    assert code == 2 and "registry.nmae" in err and "name" in err
    code, _, err = finished(cli(["+recipe=lora_small", "tracking=mlfow"], tmp_path))
    assert code != 0 and "mlfow" in err


# -- two real trainings at once on one SQLite file ----------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two trainings started together in one folder (the default store `outputs/mlflow.db`)."""
    cwd = tmp_path_factory.mktemp("two_runs")
    procs = [
        cli(["+recipe=lora_small", *FAST, "hydra.run.dir=outputs/a"], cwd),
        cli(["+recipe=lora_small", *FAST, "trainer.learning_rate=1e-3", "hydra.run.dir=outputs/b"], cwd),
    ]
    for proc in procs:
        code, _, err = finished(proc)
        assert code == 0, err[-3000:]
    return cwd


@pytest.mark.slow
def test_concurrent_runs_are_both_recorded_whole(two_runs):
    db = two_runs / "outputs" / "mlflow.db"
    client = client_for(db)
    assert {e.name for e in client.search_experiments()} - {"Default"} == {"lora_small"}  # the recipe's name
    experiment = client.get_experiment_by_name("lora_small")
    runs = {Path(r.data.tags["run_dir"]).name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["a", "b"]
    for name, run in runs.items():
        run_dir = two_runs / "outputs" / name
        state = json.loads((run_dir / "mlflow_run.json").read_text())
        assert state["run_id"] == run.info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "succeeded"
        assert run.data.tags["recipe"] == "lora_small"
        assert run.data.params["trainer.learning_rate"] == ("0.002" if name == "a" else "0.001")
        assert run.data.params["model.name_or_path"] == "minilm"
        for key in ("loss", "eval_loss", "lr", "tokens_per_s"):
            history = client.get_metric_history(run.info.run_id, key)
            assert {m.step: m.value for m in history} == pytest.approx(curve(run_dir, key)), key
            assert len(history) == len(curve(run_dir, key))  # each step once
        evaluation = json.loads((run_dir / "eval.json").read_text())
        tuned = evaluation["fine_tuned"]["metrics"]
        for metric in ("accuracy", "f1", "precision", "recall"):
            assert run.data.metrics[f"fine_tuned.{metric}"] == pytest.approx(tuned[metric])
        assert run.data.metrics["base.accuracy"] == pytest.approx(evaluation["base"]["metrics"]["accuracy"])
        lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        for stage, splits in lineage.items():
            for split, info in splits.items():
                logged = inputs[f"{stage}.{split}"]
                assert json.loads(logged.dataset.source)["fingerprint"] == info["fingerprint"]
                assert json.loads(logged.dataset.profile)["num_rows"] == info["rows"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"data", "loss_curve.png", "config.yaml", "predictions.jsonl", "eval.json"} <= artifacts
        # The model is the run's MLflow logged model (its own artifacts), not a folder of the run's.
        (output,) = run.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.source_run_id == run.info.run_id
        model_files = {Path(a.path).name for a in client.list_logged_model_artifacts(output.model_id)}
        assert {"adapter_model.safetensors", "modelops.json", "tokenizer.json"} <= model_files
        data_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "data")}
        assert {"sanitize_report.json", "rejected.jsonl", "lineage.json"} <= data_files
        assert (run_dir / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_each_run_is_a_new_version_with_its_facts(two_runs):
    client = client_for(two_runs / "outputs" / "mlflow.db")
    versions = {int(v.version): v for v in client.search_model_versions("name = 'lora_small'")}
    assert sorted(versions) == [1, 2]
    assert {v.run_id for v in versions.values()} == {r.info.run_id for r in client.search_runs(
        [client.get_experiment_by_name("lora_small").experiment_id])}  # fmt: skip
    for version in versions.values():
        run_dir = Path(version.tags["run_dir"])
        info = json.loads((run_dir / "model" / "modelops.json").read_text())
        assert version.tags["base_model"] == "minilm"
        assert version.tags["data.train.fingerprint"] == info["data"]["train"]["fingerprint"]
        accuracy = json.loads((run_dir / "eval.json").read_text())["fine_tuned"]["metrics"]["accuracy"]
        assert float(version.tags["metric.fine_tuned.accuracy"]) == pytest.approx(accuracy, abs=1e-5)
        job = json.loads((run_dir / "job.json").read_text())
        assert job["registered_model"] == f"lora_small/{version.version}"


@pytest.mark.slow
def test_registered_names_resolve_and_evaluate_like_the_run_directory(two_runs, monkeypatch):
    from modelops import Evaluator
    from modelops.data.demo_sentiment import sentiment
    from modelops.models.resolve import resolve_name_or_path

    monkeypatch.chdir(two_runs)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = client_for(two_runs / "outputs" / "mlflow.db")
    by_version = {int(v.version): Path(v.tags["run_dir"]) / "model" for v in client.search_model_versions("")}
    newest = by_version[max(by_version)]
    assert Path(resolve_name_or_path("lora_small")) == newest
    assert Path(resolve_name_or_path("lora_small@latest")) == newest
    assert Path(resolve_name_or_path("lora_small/1")) == by_version[1]
    assert Path(resolve_name_or_path("models:/lora_small/1")) == by_version[1]
    client.set_registered_model_alias("lora_small", "champion", "1")
    assert Path(resolve_name_or_path("lora_small@champion")) == by_version[1]

    data = sentiment(n_train=96, n_validation=16, n_test=64)
    by_name = Evaluator().evaluate(model="lora_small@champion", dataset=data, metrics=["accuracy", "f1"])
    by_dir = Evaluator().evaluate(model=str(by_version[1]), dataset=data, metrics=["accuracy", "f1"])
    assert by_name.metrics == by_dir.metrics

    with pytest.raises(ModelError, match=r"no registered model 'lora_smal'.*did you mean 'lora_small'"):
        resolve_name_or_path("lora_smal")
    with pytest.raises(ModelError, match=r"no version 9; its versions: \[1, 2\]"):
        resolve_name_or_path("lora_small/9")
    with pytest.raises(ModelError, match=r"alias 'staging' points to no version.*\['champion'\]"):
        resolve_name_or_path("lora_small@staging")


@pytest.mark.slow
def test_registry_cli(two_runs):
    def registry(*args: str) -> tuple[int, str, str]:
        return finished(cli([*args], two_runs, module="modelops.registry"))

    code, out, err = registry("runs", "--json")
    assert code == 0, err
    runs = json.loads(out)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"succeeded"}
    code, out, _ = registry("promote", "lora_small", "2", "staging")
    assert code == 0 and "lora_small@staging -> version 2" in out
    code, out, _ = registry("models", "--json")
    (model,) = json.loads(out)
    assert model["name"] == "lora_small" and model["versions"] == 2 and model["aliases"]["staging"] == 2
    version_dirs = {v: Path(json.loads(registry("show", f"lora_small/{v}", "--json")[1])["tags"]["run_dir"]).name
                    for v in (1, 2)}  # fmt: skip
    code, out, _ = registry("compare", "lora_small/1", "lora_small@staging", "--json")
    diff = json.loads(out)
    rate = {"a": "0.002", "b": "0.001"}
    assert ["trainer.learning_rate", rate[version_dirs[1]], rate[version_dirs[2]]] in diff["params"]
    accuracy = {n: json.loads((two_runs / "outputs" / n / "eval.json").read_text())["fine_tuned"]["metrics"]["accuracy"]
                for n in ("a", "b")}  # fmt: skip
    a, b = accuracy[version_dirs[1]], accuracy[version_dirs[2]]
    row = next(r for r in diff["metrics"] if r[0] == "fine_tuned.accuracy")
    assert row[1:] == pytest.approx([a, b, b - a])
    # Per example, from the two runs' predictions: the delta is the accuracy difference, inside its interval.
    paired = diff["paired"]["accuracy"]
    assert paired["delta"] == pytest.approx(b - a) and paired["low"] <= paired["delta"] <= paired["high"]
    assert paired["n"] == len((two_runs / "outputs" / "a" / "predictions.jsonl").read_text().splitlines())
    assert 0.0 <= paired["mcnemar_p"] <= 1.0
    code, out, _ = registry("compare", "lora_small/1", "lora_small/2")
    assert code == 0 and f"per example, accuracy (n={paired['n']}): delta {paired['delta']:+.4f}" in out
    code, out, _ = registry("lineage", "lora_small/1", "--json")
    lineage = json.loads(out)
    train_fp = json.loads((two_runs / "outputs" / version_dirs[1] / "model" / "modelops.json").read_text())
    assert lineage["base_model"] == "minilm"
    assert train_fp["data"]["train"]["fingerprint"] in {d["fingerprint"] for d in lineage["data"]}
    code, out, _ = registry("runs")  # the table
    assert code == 0 and "fine_tuned.accuracy" in out.splitlines()[0]
    code, _, err = registry("show", "lora_small/7")
    assert code == 2 and "no version 7" in err
    code, _, err = registry("promote", "lora_small", "1", "latest")
    assert code == 2 and "reserved" in err
    code, out, _ = finished(cli(["models"], two_runs))  # the same commands from the main entrypoint
    assert code == 0 and "lora_small" in out


def test_a_sweep_is_a_parent_run_with_a_child_per_trial(tmp_path):
    args = ["-m", "+recipe=lora_small", "stages=[sanitize]", *FAST, "dataset.seed=0,1", "hydra.sweep.dir=outputs/sweep"]
    code, _, err = finished(cli(args, tmp_path))
    assert code == 0, err[-3000:]
    client = client_for(tmp_path / "outputs" / "mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("lora_small").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(Path(r.data.tags["run_dir"]).name for r in children) == ["0", "1"]
    assert {r.data.params["dataset.seed"] for r in children} == {"0", "1"}
    assert parent.info.status == "FINISHED"
    assert "sweep_summary.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
