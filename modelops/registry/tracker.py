"""One MLflow run per modelops run, filled from what the run directory holds.

`start_run` opens the run before anything heavy happens (so a store that cannot be written fails
first) and logs the config as params; `RunTracker.finish` logs the training curve from
`metrics.jsonl`, the evaluation metrics, the dataset inputs from `data/lineage.json`, the
artifacts, the final status, and registers `model/` as the next version of a registered model.
The run's id is kept in the run directory (`mlflow_run.json`): running the same directory again
(a resumed training) continues the same MLflow run, and the steps already logged are not logged
again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ModelopsError
from modelops.io import write_json
from modelops.registry import store
from modelops.registry.settings import DEFAULT_EXPERIMENT, TrackingConfig, store_uri

RUN_FILE = "mlflow_run.json"
_MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
_MAX_PARAM = 6000  # MLflow's limit on a param value
_MAX_TAG = 8000
# Files of a run directory logged as artifacts: (path in the run dir, artifact folder).
_ARTIFACT_FILES = (
    ("data/sanitize_report.json", "data"), ("data/rejected.jsonl", "data"), ("data/lineage.json", "data"),
    ("data/train_preview.txt", "data"), ("predictions.jsonl", ""), ("base_predictions.jsonl", ""),
    ("eval.json", ""), ("metrics.jsonl", ""), ("loss_curve.png", ""), ("job_spec.json", ""),
)  # fmt: skip


def start_run(
    settings: TrackingConfig,
    run_dir: str | Path,
    config: dict[str, Any],
    recipe: str | None = None,
    registry_name: str | None = None,
    log_with: Any = None,
) -> RunTracker | None:
    """Open (or, for a run directory tracked before, continue) the MLflow run of `run_dir`.

    Args:
        settings: the `tracking` config node; returns None when it is disabled.
        run_dir: the run directory.
        config: the composed config as plain data, logged as params with dotted keys.
        recipe: the recipe's name (tag, and the experiment's default name).
        registry_name: the registered model to add a version to (default: the experiment name).
        log_with: Accelerate's trackers (`trainer.log_with`); with `mlflow` among them, Accelerate logs the training
            curve into this same run and `finish` does not log it again.

    Raises:
        ConfigError: naming the URI, when the store is unreachable or cannot be written.
    """
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # also for Accelerate's own mlflow tracker
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO lines about its tables in the run's output
    if not settings.enabled:
        return None
    uri = store_uri(settings.uri)
    store.check_store(uri)
    experiment = settings.experiment or recipe or DEFAULT_EXPERIMENT
    tags = _run_tags(recipe)
    try:
        with store.store_lock(uri):
            tracker = RunTracker.open(uri, experiment, Path(run_dir), tags, registry_name or experiment)
            tracker.log_params(flatten_config(config))
    except ModelopsError:
        raise
    except Exception as exc:
        raise ConfigError(f"tracking store {uri}: cannot record the run ({_first_line(exc)}); {store.HINT}") from exc
    by_accelerate = "mlflow" in ([log_with] if isinstance(log_with, str) else list(log_with or []))
    if by_accelerate:
        # Accelerate's MLflowTracker reads these: its curve then lands in this run, once.
        os.environ.update(MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=tracker.run_id, MLFLOW_EXPERIMENT_NAME=experiment)
    tracker.state["curve_by_accelerate"] = by_accelerate
    tracker.save_state()  # outside the store's error handling: a run directory that cannot be written says so
    return tracker


class RunTracker:
    """The MLflow run of one run directory. Built by `start_run`; `finish` records the outcome."""

    def __init__(self, client, uri: str, run_dir: Path, state: dict[str, Any]):
        self.client, self.uri, self.run_dir, self.state = client, uri, run_dir, state

    @property
    def run_id(self) -> str:
        return self.state["run_id"]

    @classmethod
    def open(cls, uri: str, experiment: str, run_dir: Path, tags: dict[str, str], registry_name: str) -> RunTracker:
        client = store.client(uri)
        state = _read_state(run_dir)
        if state.get("tracking_uri") == uri and _run_exists(client, state.get("run_id")):
            client.update_run(state["run_id"], status="RUNNING")
            client.set_tag(state["run_id"], "status", "running")
            return cls(client, uri, run_dir, state)
        experiment_id = store.experiment_id(client, uri, experiment)
        parent = _sweep_parent(client, uri, experiment_id, run_dir)
        if parent:
            tags["mlflow.parentRunId"] = parent
        tags["run_dir"] = str(run_dir.resolve())
        run = client.create_run(experiment_id, tags=tags, run_name=run_dir.name)
        state = {"run_id": run.info.run_id, "experiment_id": experiment_id, "experiment": experiment,
                 "tracking_uri": uri, "registry_name": registry_name, "logged_steps": {}}  # fmt: skip
        return cls(client, uri, run_dir, state)

    def save_state(self) -> None:
        write_json(self.run_dir / RUN_FILE, self.state)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        # A resumed run keeps the params it has (MLflow refuses to change one).
        have = self.client.get_run(self.run_id).data.params
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items() if k not in have])

    def finish(self, status: str, results: dict[str, Any] | None = None, error: str | None = None) -> str | None:
        """Record the run's end: curve, metrics, inputs, artifacts, status; register `model/` on success.

        A store that fails now only warns: the run directory holds the results either way.

        Returns:
            `NAME/VERSION` of the registered version, or None.
        """
        try:
            with store.store_lock(self.uri):
                return self._finish(status, results or {}, error)
        except Exception as exc:
            warnings.warn(
                f"tracking store {self.uri}: could not record the end of run {self.run_id} ({_first_line(exc)}); "
                f"the run directory {self.run_dir} holds its results",
                stacklevel=2,
            )
            return None

    def _finish(self, status: str, results: dict[str, Any], error: str | None) -> str | None:
        from mlflow.entities import RunTag

        self._log_metrics(results)
        self._log_inputs()
        self._log_artifacts()
        tags = [RunTag("status", status)]
        if error:
            tags.append(RunTag("error", error[:_MAX_TAG]))
        self.client.log_batch(self.run_id, tags=tags)
        registered = None
        model_dir = self.run_dir / "model"
        if status == "succeeded" and (model_dir / "modelops.json").is_file():
            registered = self._register(model_dir, results)
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(status, "FAILED"))
        self.save_state()
        return registered

    # -- what is logged -----------------------------------------------------------------------

    def _log_metrics(self, results: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        from modelops.sweep import flatten_results

        stamp = int(time.time() * 1000)
        metrics = [] if self.state.get("curve_by_accelerate") else self._curve(stamp)
        last_step = max([m.step for m in metrics] + [0])
        metrics += [Metric(k, v, stamp, last_step) for k, v in flatten_results(results).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def _curve(self, stamp: int) -> list:
        """The rows of `metrics.jsonl` not logged yet: per key, only steps after the last one logged."""
        from mlflow.entities import Metric

        path = self.run_dir / "metrics.jsonl"
        logged: dict[str, int] = self.state["logged_steps"]
        metrics = []
        for line in path.read_text().splitlines() if path.exists() else []:
            row = json.loads(line)
            step = int(row.get("step", 0))
            for key, value in row.items():
                if key == "step" or not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                if step > logged.get(key, -1):
                    metrics.append(Metric(key, float(value), stamp, step))
                    logged[key] = step
        return metrics

    def _log_inputs(self) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        path = self.run_dir / "data" / "lineage.json"
        if not path.exists() or self.state.get("inputs_logged"):
            return
        inputs = []
        lineage = json.loads(path.read_text())
        for stage in ("loaded", "sanitized"):  # beside them: the load report, which has no fingerprints
            for split, info in lineage.get(stage, {}).items():
                source = json.dumps({"stage": stage, "split": split, "fingerprint": info["fingerprint"],
                                     "run_dir": str(self.run_dir.resolve())})  # fmt: skip
                dataset = Dataset(name=f"{stage}.{split}", digest=info["fingerprint"][:32], source_type="modelops",
                                  source=source, profile=json.dumps({"num_rows": info["rows"]}))  # fmt: skip
                tags = [InputTag("mlflow.data.context", split), InputTag("stage", stage)]
                inputs.append(DatasetInput(dataset, tags))
        self.client.log_inputs(self.run_id, datasets=inputs)
        self.state["inputs_logged"] = True

    def _log_artifacts(self) -> None:
        run_dir = self.run_dir
        for name, folder in _ARTIFACT_FILES:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name), folder or None)
        for plot in sorted(run_dir.glob("*confusion_matrix.png")):
            self.client.log_artifact(self.run_id, str(plot))
        if (run_dir / ".hydra" / "config.yaml").is_file():
            self.client.log_artifact(self.run_id, str(run_dir / ".hydra" / "config.yaml"))
        model_dir = run_dir / "model"
        if (model_dir / "modelops.json").is_file():
            # model/base/ only links the base model's weights (for plain peft loading): modelops.json names the base.
            for item in sorted(model_dir.iterdir()):
                if item.is_file():
                    self.client.log_artifact(self.run_id, str(item), "model")
                elif item.is_dir() and item.name != "base":
                    self.client.log_artifacts(self.run_id, str(item), f"model/{item.name}")

    def _register(self, model_dir: Path, results: dict[str, Any]) -> str:
        from mlflow.exceptions import MlflowException

        name = self.state["registry_name"]
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:  # it exists already (maybe created a moment ago by another run)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = self.client.get_run(self.run_id)
        tags, description = version_facts(model_dir, results, self.run_dir)
        parent = self._parent_version(tags.get("continued_from"))
        if parent:
            tags["parent_model_version"] = parent
        version = self.client.create_model_version(
            name, source=f"{run.info.artifact_uri}/model", run_id=self.run_id, tags=tags, description=description
        )
        self.state["registered"] = {"name": name, "version": int(version.version)}
        self.client.set_tag(self.run_id, "registered_model", f"{name}/{version.version}")
        return f"{name}/{version.version}"

    def _parent_version(self, ref: str | None) -> str | None:
        """`NAME/VERSION` of the registered version training continued from (an alias may move later)."""
        from modelops.registry.refs import find_version, parse_reference

        parsed = parse_reference(ref or "")
        found = find_version(self.client, parsed, self.uri, quiet=True) if parsed else None
        return f"{found.name}/{found.version}" if found else None


def version_facts(model_dir: Path, results: dict[str, Any], run_dir: Path) -> tuple[dict[str, str], str]:
    """The tags and description of a registered version: run directory, base model, data, eval metrics."""
    from modelops.sweep import flatten_results

    info = json.loads((model_dir / "modelops.json").read_text())
    tags = {"run_dir": str(run_dir.resolve()), "base_model": str(info["base_model"]), "task": str(info["task"]),
            "adapter": str(bool(info.get("peft"))).lower()}  # fmt: skip
    if info.get("continued_from"):
        tags["continued_from"] = str(info["continued_from"])
    for split, data in (info.get("data") or {}).items():
        tags[f"data.{split}.fingerprint"] = data["fingerprint"]
        tags[f"data.{split}.rows"] = str(data["rows"])
    metrics = {k: v for k, v in flatten_results(results).items() if not k.startswith("train.")}
    tags |= {f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()}
    train = (info.get("data") or {}).get("train")
    data = f" on train data {train['fingerprint'][:12]} ({train['rows']} rows)" if train else ""
    scores = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return tags, f"Fine-tuned from {info['base_model']}{data}. {scores}".strip()


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"trainer": {"epochs": 1}}` -> `{"trainer.epochs": "1"}`; lists of mappings get index keys."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten_config(value, f"{path}.")
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            flat |= flatten_config({str(i): v for i, v in enumerate(value)}, f"{path}.")
        else:
            flat[path] = (json.dumps(value) if isinstance(value, list) else str(value))[:_MAX_PARAM]
    return flat


def finish_sweep(sweep_dir: str | Path, best: dict[str, Any] | None, objective: str) -> None:
    """End a sweep's parent run: the summary files as artifacts, the best trial and its objective.

    Does nothing for a sweep whose trials were not tracked.
    """
    sweep_dir = Path(sweep_dir)
    state = _read_state(sweep_dir)
    if not state:
        return
    try:
        with store.store_lock(state["tracking_uri"]):
            client = store.client(state["tracking_uri"])
            for name in ("sweep_summary.md", "sweep_summary.csv", "sweep_summary.png"):
                if (sweep_dir / name).is_file():
                    client.log_artifact(state["run_id"], str(sweep_dir / name))
            if best and best["metrics"].get(objective) is not None:
                client.set_tag(state["run_id"], "best_trial", best["trial"])
                client.log_metric(state["run_id"], objective, best["metrics"][objective])
            client.set_terminated(state["run_id"], "FINISHED")
    except Exception as exc:
        warnings.warn(f"tracking store: could not close the sweep's run ({_first_line(exc)})", stacklevel=2)


def _sweep_parent(client, uri: str, experiment_id: str, run_dir: Path) -> str | None:
    """The parent run of a Hydra multirun trial (`<sweep dir>/multirun.yaml` exists), created by its first trial."""
    sweep_dir = run_dir.parent
    if not (sweep_dir / "multirun.yaml").is_file():
        return None
    state = _read_state(sweep_dir)
    if state.get("tracking_uri") == uri:
        return state["run_id"]
    run = client.create_run(experiment_id, tags={"sweep": "true", **_run_tags(None)}, run_name=sweep_dir.name)
    write_json(sweep_dir / RUN_FILE, {"run_id": run.info.run_id, "tracking_uri": uri})
    return run.info.run_id


def _run_tags(recipe: str | None) -> dict[str, str]:
    import modelops

    tags = {"status": "running", "modelops_version": modelops.__version__, "mlflow.source.name": "modelops"}
    if recipe:
        tags["recipe"] = recipe
    commit = _git_commit(Path.cwd())
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _git_commit(cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _run_exists(client, run_id: str | None) -> bool:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
