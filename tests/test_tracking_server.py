"""Against a real `mlflow server` (SQLite backend, proxied artifacts), and FineTuningJob runs in MLflow."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_registry import FAST, cli, curve, finished


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (a free port) with its store in `folder`; stopped whatever happens."""
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
               "--artifacts-destination", str(folder / "server-artifacts")]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    with serve(tmp_path) as uri:
        yield uri


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


# -- what MLflow's UI shows, read through the REST API it reads ---------------------------------

#: Two tiny lora_small runs that differ in their learning rate (the issue's 1e-3 vs 3e-4).
TWO_RATES = ("1e-3", "3e-4")
_TINY = ["dataset.n_train=64", "dataset.n_validation=16", "dataset.n_test=32", "trainer.batch_size=16",
         "trainer.log_every=1", "trainer.eval_every=2", "trainer.warmup_ratio=0.0"]  # fmt: skip


def rest(uri: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    """One call of MLflow's REST API (`/api/2.0/mlflow/...`), as the UI makes it."""
    url = f"{uri}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def served_runs(tmp_path_factory):
    """A server and a store with two real runs of lora_small, started together."""
    folder = tmp_path_factory.mktemp("served")
    with serve(folder) as uri:
        env = {"MLFLOW_TRACKING_URI": uri}
        procs = [cli(["+recipe=lora_small", f"trainer.learning_rate={rate}", *_TINY, f"hydra.run.dir=outputs/{i}"],
                     folder, env) for i, rate in enumerate(TWO_RATES)]  # fmt: skip
        for proc in procs:
            code, _, err = finished(proc)
            assert code == 0, err[-3000:]
        yield uri


@pytest.mark.slow
def test_the_ui_opens_two_runs_as_model_training_with_curves_params_models_and_data(served_runs):
    uri = served_runs
    experiment = rest(uri, "experiments/get-by-name", experiment_name="lora_small")["experiment"]
    assert {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.experimentKind"] == "finetuning"
    runs = rest(uri, "runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 2
    by_rate = {}
    for run in runs:
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        by_rate[params["trainer.learning_rate"]] = run
        # Readable params: resolved values, no Hydra internals, no keys of objectives an SFT run does not use.
        assert params["tracking.uri"] == uri and params["registry.name"] == "lora_small"
        assert params["tracking.experiment"] == "lora_small" and params["trainer.objective"] == "sft"
        assert not [k for k in params if "_target_" in k or "_recursive_" in k or ".steps." in k]
        assert "None" not in params.values() and "trainer.beta" not in params and "trainer.simpo_gamma" not in params
        assert params["sanitizer.near_dedup.threshold"] == "0.8" and params["trainer.optimizer"] == "torch.optim.AdamW"
    assert sorted(by_rate) == ["0.0003", "0.001"]

    for rate, run in zip(TWO_RATES, (by_rate["0.001"], by_rate["0.0003"]), strict=True):
        info, tags = run["info"], {t["key"]: t["value"] for t in run["data"]["tags"]}
        run_id, run_dir = info["run_id"], Path(tags["run_dir"])
        assert info["run_name"].startswith(f"lora_small learning_rate={rate} ")
        assert f"trainer.learning_rate={rate}" in tags["mlflow.note.content"]
        assert "Fine-tunes minilm" in tags["mlflow.note.content"]

        # Curves as curves, at every logged step, each step once; final results once, not at the last step.
        metrics = {m["key"] for m in run["data"]["metrics"]}
        assert "epoch" not in metrics and not [k for k in metrics if k.startswith("train.")]
        for key in ("loss", "lr", "tokens_per_s", "eval_loss", "eval_accuracy"):
            history = rest(uri, "metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
            steps = [int(m.get("step", 0)) for m in history]
            assert steps == sorted(set(steps)) and len(steps) >= 2, key
            assert {int(m.get("step", 0)): m["value"] for m in history} == pytest.approx(curve(run_dir, key)), key
        evaluation = json.loads((run_dir / "eval.json").read_text())
        for name in ("base", "fine_tuned"):
            (point,) = rest(uri, "metrics/get-history", run_id=run_id, metric_key=f"{name}.accuracy")["metrics"]
            assert int(point.get("step", 0)) == 0
            assert point["value"] == pytest.approx(evaluation[name]["metrics"]["accuracy"])

        # The model: an MLflow logged model from this run (an adapter naming its base), registered as the version.
        (output,) = run["outputs"]["model_outputs"]
        model = rest(uri, f"logged-models/{output['model_id']}")["model"]
        assert model["info"]["source_run_id"] == run_id and model["info"]["status"] == "LOGGED_MODEL_READY"
        model_params = {p["key"]: p["value"] for p in model["data"]["params"]}
        assert model_params["base_model"] == "minilm" and model_params["adapter"] == "true"
        assert model_params["peft.peft_type"] == "LORA" and model_params["peft.r"] == "8"
        versions = rest(uri, "model-versions/search", filter="name='lora_small'")["model_versions"]
        (version,) = [v for v in versions if v["run_id"] == run_id]
        assert version["source"] == model["info"]["artifact_uri"] and output["model_id"] in version["source"]
        assert version["description"].startswith("Fine-tuned from minilm")
        assert json.loads((run_dir / "job.json").read_text())["registered_model"] == f"lora_small/{version['version']}"

        # Datasets: the sanitized split the model trained on comes first, its source this run.
        lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
        inputs = run["inputs"]["dataset_inputs"]
        first = inputs[0]["dataset"]
        assert first["name"] == "sanitized.train"
        assert json.loads(first["profile"])["num_rows"] == lineage["sanitized"]["train"]["rows"]
        for item in inputs:
            source = json.loads(item["dataset"]["source"])
            assert source["run_id"] == run_id and Path(source["run_dir"]) == run_dir
            assert source["fingerprint"] == lineage[source["stage"]][source["split"]]["fingerprint"]

        # Artifacts: the comparison table, flagged rows, tokenize report, the run's log, the config.
        files = {f["path"] for f in rest(uri, "artifacts/list", run_id=run_id)["files"]}
        assert {"config.yaml", "confusion_matrix.png", "evaluation", "data", "logs"} <= files
        data_files = {f["path"] for f in rest(uri, "artifacts/list", run_id=run_id, path="data")["files"]}
        assert {"data/flagged.jsonl", "data/tokenize_report.json", "data/sanitize_report.json"} <= data_files
        with urllib.request.urlopen(f"{uri}/get-artifact?path=evaluation/comparison.json&run_uuid={run_id}") as fh:
            table = json.loads(fh.read())
        rows = {row[0]: row for row in table["data"]}
        assert table["columns"] == ["metric", "base", "fine_tuned", "delta", "delta_low", "delta_high"]
        base, tuned = evaluation["base"]["metrics"]["accuracy"], evaluation["fine_tuned"]["metrics"]["accuracy"]
        assert rows["accuracy"][1:4] == pytest.approx([base, tuned, tuned - base])

    # The same data in both runs: the same content fingerprint, each record naming its own run.
    digests = {r["info"]["run_id"]: r["inputs"]["dataset_inputs"][0]["dataset"]["digest"] for r in runs}
    assert len(set(digests.values())) == 2 and len({d.split("-")[0] for d in digests.values()}) == 1
    registered = rest(uri, "registered-models/get", name="lora_small")["registered_model"]
    assert registered["description"].startswith("Models fine-tuned by modelops from minilm")
