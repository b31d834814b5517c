"""Against a real `mlflow server` (SQLite backend, proxied artifacts), and FineTuningJob runs in MLflow."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_registry import FAST, cli, curve, finished


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "server-artifacts")]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow
def test_a_run_on_a_tracking_server_is_read_back_and_its_model_loads_by_name(mlflow_server, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from modelops import Evaluator
    from modelops.data.demo_sentiment import sentiment

    work = tmp_path / "work"
    work.mkdir()
    args = ["+recipe=lora_small", *FAST, "registry.name=sentiment", "hydra.run.dir=outputs/r"]
    code, out, err = finished(cli(args, work, {"MLFLOW_TRACKING_URI": mlflow_server}))
    assert code == 0, err[-3000:]
    assert "registered: sentiment/1" in out
    run_dir = work / "outputs" / "r"
    assert not (work / "outputs" / "mlflow.db").exists()  # everything went to the server

    client = MlflowClient(mlflow_server)
    run = client.get_run(json.loads((run_dir / "mlflow_run.json").read_text())["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "succeeded"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert {m.step: m.value for m in history} == pytest.approx(curve(run_dir, "loss"))
    lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
    logged = {d.dataset.name: json.loads(d.dataset.source)["fingerprint"] for d in run.inputs.dataset_inputs}
    assert logged["sanitized.train"] == lineage["sanitized"]["train"]["fingerprint"]
    version = client.get_model_version("sentiment", "1")
    assert version.run_id == run.info.run_id and version.source.startswith("mlflow-artifacts:")

    # With the run directory gone from this machine, the name loads the server's copy.
    moved = tmp_path / "elsewhere"
    shutil.move(str(run_dir), moved)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MODELOPS_CACHE", str(tmp_path / "cache"))
    data = sentiment(n_train=96, n_validation=16, n_test=64)
    by_name = Evaluator().evaluate(model="sentiment", dataset=data, metrics=["accuracy", "f1"])
    by_dir = Evaluator().evaluate(model=str(moved / "model"), dataset=data, metrics=["accuracy", "f1"])
    assert by_name.metrics == by_dir.metrics
    assert any((tmp_path / "cache" / "registry").rglob("adapter_model.safetensors"))


@pytest.mark.slow
def test_seed_example_with_a_registered_name_and_a_resumed_job(tmp_path, monkeypatch):
    from modelops import Evaluator, FineTuningJob
    from modelops.data.demo_sentiment import sentiment
    from modelops.registry.store import client

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = sentiment(n_train=64, n_validation=0, n_test=64, seed=3)
    job = FineTuningJob(model="minilm_cls", dataset=data, max_steps=30, batch_size=8, learning_rate=2e-3,
                        log_every=1, registry_name="fine-tuned-model")  # fmt: skip
    job.start()
    deadline = time.monotonic() + 180
    while job.progress == 0 and job.status not in ("failed", "succeeded") and time.monotonic() < deadline:
        time.sleep(0.1)
    job.cancel()
    assert job.wait(timeout=120) == "cancelled", job.error
    store = client(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    run_id = json.loads((job.run_dir / "mlflow_run.json").read_text())["run_id"]
    cancelled = store.get_run(run_id)
    assert cancelled.info.status == "KILLED" and cancelled.data.tags["status"] == "cancelled"
    assert store.search_model_versions("") == []

    # Running the worker again resumes from the checkpoint into the same MLflow run.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-m", "modelops.run", str(job.run_dir)], env=env, check=True, timeout=300)
    assert job.status == "succeeded"
    (run,) = store.search_runs([cancelled.info.experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    steps = [m.step for m in store.get_metric_history(run_id, "loss")]
    assert sorted(steps) == sorted(set(steps)) == sorted(curve(job.run_dir, "loss")) and max(steps) == 30

    # The seed's example, with the registered name.
    by_name = Evaluator().evaluate(model="fine-tuned-model", dataset=data, metrics=["accuracy", "f1"])
    by_dir = Evaluator().evaluate(model=job.fine_tuned_model, dataset=data, metrics=["accuracy", "f1"])
    assert by_name.metrics == by_dir.metrics


@pytest.mark.slow
def test_a_job_continues_from_a_registered_adapter(tmp_path, monkeypatch):
    from modelops import FineTuningJob
    from modelops.data.demo_sentiment import sentiment
    from modelops.registry.store import client

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = sentiment(n_train=96, n_validation=0, n_test=0, seed=3)
    options = {"batch_size": 16, "log_every": 1, "seed": 0, "registry_name": "sentiment"}
    first = FineTuningJob(model="minilm_cls", dataset=data, epochs=2, learning_rate=2e-3, **options).start()
    assert first.wait(timeout=300) == "succeeded", first.error
    store = client(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    store.set_registered_model_alias("sentiment", "champion", "1")

    second = FineTuningJob(model="sentiment@champion", dataset=data, epochs=1, learning_rate=1e-5, **options).start()
    assert second.wait(timeout=300) == "succeeded", second.error
    # It starts where the champion ended, not from a fresh adapter: at a learning rate of 1e-5 its
    # weights stay next to the champion's, while the champion's LoRA B matrices moved far from their zero init.
    from safetensors.torch import load_file

    champion, continued = (load_file(job.fine_tuned_model / "adapter_model.safetensors") for job in (first, second))
    assert champion.keys() == continued.keys()
    lora_b = [k for k in champion if "lora_B" in k]
    moved = sum(float(champion[k].norm()) for k in lora_b)
    drift = sum(float((continued[k] - champion[k]).norm()) for k in lora_b)
    assert moved > 0 and drift < 0.05 * moved
    fresh_start, continued_start = (curve(job.run_dir, "loss")[1] for job in (first, second))
    assert continued_start < fresh_start
    info = json.loads((second.fine_tuned_model / "modelops.json").read_text())
    assert info["base_model"] == "minilm" and info["continued_from"] == "sentiment@champion" and info["peft"]
    version = store.get_model_version("sentiment", "2")
    assert version.tags["parent_model_version"] == "sentiment/1"


@pytest.mark.slow
def test_accelerate_mlflow_tracker_writes_into_the_same_run_once(tmp_path):
    args = ["+recipe=lora_small", *FAST, "trainer.log_with=mlflow", "stages=[train]", "hydra.run.dir=outputs/r"]
    code, _, err = finished(cli(args, tmp_path))
    assert code == 0, err[-3000:]
    from modelops.registry.store import client

    store = client(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("lora_small")
    (run,) = store.search_runs([experiment.experiment_id])  # Accelerate opened no second run
    assert run.info.status == "FINISHED"
    # Accelerate's config logging names the trainer keys as the composed config does: one param per key.
    assert run.data.params["trainer.epochs"] == "1" and "epochs" not in run.data.params
    history = store.get_metric_history(run.info.run_id, "loss")
    run_dir = tmp_path / "outputs" / "r"
    assert sorted(m.step for m in history) == sorted(curve(run_dir, "loss"))  # each step once
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
