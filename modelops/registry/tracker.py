"""One MLflow run per modelops run: a component the pipeline calls while the run goes.

`start_run` opens the run before anything heavy happens (so a store that cannot be written fails
first): the experiment's kind (so MLflow's UI opens it as model training), a name after the recipe
and what changed, a description, readable params, and the composed config as `config.yaml`.
While training, `RunTracker.sink` (a `MetricSink`) logs each row of the curve at its step, so the
UI shows a live curve. `log_datasets`, `log_evaluation` and `log_model` take what the pipeline holds
in memory; `finish` records the end (artifacts, status) and registers the logged model as the next
version of a registered model. The run's id is kept in the run directory (`mlflow_run.json`):
running the same directory again (a resumed training) continues the same MLflow run, and the
steps MLflow already has are not logged again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ModelopsError
from modelops.flatten import flatten, flatten_results, is_number
from modelops.io import write_json
from modelops.registry import store
from modelops.registry.params import MAX_PARAM, run_description, run_name, run_params
from modelops.registry.refs import find_version, parse_reference
from modelops.registry.settings import DEFAULT_EXPERIMENT, RUN_FILE, TrackingConfig, store_uri

_MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
_MAX_TAG = 8000
#: MLflow 3.17 opens an experiment without this tag as a GenAI experiment (traces, "Evaluations").
EXPERIMENT_KIND = ("mlflow.experimentKind", "finetuning")
#: Row keys that are not curves: the step itself, and the epoch (a flat line on short runs; in metrics.jsonl).
_NOT_CURVES = ("step", "epoch")
#: What a logged PEFT adapter shows of its `adapter_config.json` (beside its base model).
_PEFT_PARAMS = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save", "use_dora")
#: Result blocks that are final evaluations (logged once, linked to the logged model, compared in a table).
EVALUATIONS = ("base", "fine_tuned")
#: The base-vs-fine-tuned table (MLflow's table artifact: shown in the UI's artifact view, read by `load_table`).
COMPARISON_TABLE = "evaluation/comparison.json"
# Files of a run directory logged as artifacts: (path in the run dir, artifact folder).
_ARTIFACT_FILES = (
    ("data/sanitize_report.json", "data"), ("data/rejected.jsonl", "data"), ("data/flagged.jsonl", "data"),
    ("data/lineage.json", "data"), ("data/tokenize_report.json", "data"), ("data/train_preview.txt", "data"),
    ("predictions.jsonl", ""), ("base_predictions.jsonl", ""), ("eval.json", ""), ("metrics.jsonl", ""),
    ("loss_curve.png", ""), ("job_spec.json", ""),
)  # fmt: skip


def start_run(
    settings: TrackingConfig,
    run_dir: str | Path,
    config: dict[str, Any],
    recipe: str | None = None,
    registry_name: str | None = None,
    log_with: Any = None,
    overrides: Sequence[str] = (),
) -> RunTracker | None:
    """Open (or, for a run directory tracked before, continue) the MLflow run of `run_dir`.

    Args:
        settings: the `tracking` config node; returns None when it is disabled.
        run_dir: the run directory.
        config: the composed config as plain data: readable params, and `config.yaml` whole.
        recipe: the recipe's name (tag, run name, and the experiment's default name).
        registry_name: the registered model to add a version to (default: the experiment name).
        log_with: Accelerate's trackers (`trainer.log_with`); with `mlflow` among them, Accelerate logs the training
            curve into this same run and `sink` does not log it again.
        overrides: the command-line overrides (the run's name and description say what changed).

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
    registry_name = registry_name or experiment
    run_dir = Path(run_dir)
    tags = _run_tags(recipe) | {"mlflow.note.content": run_description(config, recipe, overrides)}
    name = run_name(recipe, overrides, run_dir.name)
    resolved = {"tracking.uri": uri, "tracking.experiment": experiment, "registry.name": registry_name}
    try:
        with store.store_lock(uri):
            tracker = RunTracker.open(uri, experiment, run_dir, tags, registry_name, name)
            tracker.log_params(run_params(config, resolved))
            tracker.client.log_dict(tracker.run_id, config, "config.yaml")
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

    def __init__(self, client, uri: str, run_dir: Path, state: dict[str, Any], logged_steps: dict[str, int]):
        self.client, self.uri, self.run_dir, self.state = client, uri, run_dir, state
        self.logged_steps = logged_steps  # metric -> the last step MLflow has (a resumed run logs only later ones)
        self._sink_failed = False

    @property
    def run_id(self) -> str:
        return self.state["run_id"]

    @classmethod
    def open(cls, uri: str, experiment: str, run_dir: Path, tags: dict[str, str], registry_name: str,
             name: str | None = None) -> RunTracker:  # fmt: skip
        client = store.client(uri)
        state = _read_state(run_dir)
        if state.get("tracking_uri") == uri and _run_exists(client, state.get("run_id")):
            client.update_run(state["run_id"], status="RUNNING")
            client.set_tag(state["run_id"], "status", "running")
            return cls(client, uri, run_dir, state, _last_steps(client, state["run_id"]))
        experiment_id = store.experiment_id(client, uri, experiment)
        set_experiment_kind(client, experiment_id)
        parent = _sweep_parent(client, uri, experiment_id, run_dir)
        if parent:
            tags["mlflow.parentRunId"] = parent
        tags["run_dir"] = str(run_dir.resolve())
        run = client.create_run(experiment_id, tags=tags, run_name=name or run_dir.name)
        state = {"run_id": run.info.run_id, "experiment_id": experiment_id, "experiment": experiment,
                 "tracking_uri": uri, "registry_name": registry_name}  # fmt: skip
        return cls(client, uri, run_dir, state, {})

    def save_state(self) -> None:
        write_json(self.run_dir / RUN_FILE, self.state)

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        # A resumed run keeps the params it has (MLflow refuses to change one).
        have = self.client.get_run(self.run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in have]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    # -- while the run goes ----------------------------------------------------------------------

    def sink(self, row: Mapping[str, Any]) -> None:
        """A `MetricSink`: log one training/validation row at its step (a live curve in MLflow's UI).

        Steps MLflow already has (a resumed run) are skipped. A store that fails now warns once and
        training goes on: `metrics.jsonl` in the run directory holds the curve either way.
        """
        if self.state.get("curve_by_accelerate") or self._sink_failed:
            return
        from mlflow.entities import Metric

        step, stamp = int(row.get("step", 0)), int(time.time() * 1000)
        metrics = []
        for key, value in row.items():
            if key in _NOT_CURVES or not is_number(value) or step <= self.logged_steps.get(key, -1):
                continue
            metrics.append(Metric(key, float(value), stamp, step))
            self.logged_steps[key] = step
        if not metrics:
            return
        try:
            with store.store_lock(self.uri):
                self.client.log_batch(self.run_id, metrics=metrics)
        except Exception as exc:
            self._sink_failed = True
            warnings.warn(f"tracking store {self.uri}: the live curve stops here ({_first_line(exc)}); "
                          f"{self.run_dir}/metrics.jsonl keeps it", stacklevel=2)  # fmt: skip

    def log_datasets(self, lineage: Mapping[str, Any]) -> None:
        """The run's dataset inputs: the sanitized splits first (what the model trained on), then the loaded ones.

        Each record's source is this run (MLflow keeps one record per name and digest in an
        experiment, so the digest is the content fingerprint's start plus this run's id).
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if self.state.get("inputs_logged"):
            return
        inputs = []
        for stage in ("sanitized", "loaded", "input"):  # input: a FineTuningJob's dataset, as given
            for split, info in (lineage.get(stage) or {}).items():
                source = {"run_id": self.run_id, "run_dir": str(self.run_dir.resolve()), "stage": stage,
                          "split": split, "fingerprint": info["fingerprint"]}  # fmt: skip
                digest = f"{info['fingerprint'][:12]}-{self.run_id[:8]}"
                profile = json.dumps({"num_rows": info["rows"]})
                dataset = Dataset(f"{stage}.{split}", digest, "modelops_run", json.dumps(source), profile=profile)
                context = split if stage != "loaded" else f"{split} (before sanitizing)"
                tags = [InputTag("mlflow.data.context", context), InputTag("stage", stage)]
                inputs.append(DatasetInput(dataset, tags))
        with store.store_lock(self.uri):
            self.client.log_inputs(self.run_id, datasets=inputs)
        self.state["inputs_logged"] = True

    def log_evaluation(self, results: Mapping[str, Any]) -> None:
        """Final scores, once each (step 0; the fine-tuned ones linked to the logged model when there is one), and
        at the end (`finish`) `evaluation/comparison.json`: base vs fine-tuned with the deltas.

        Call it with what is known so far (`{"base": ...}` before training, then both): each evaluation is
        logged once. The table's `delta_low`/`delta_high` columns hold the delta's interval; they stay empty
        until the results carry one (`results["deltas"][metric]`, the evaluator's paired intervals).
        """
        from mlflow.entities import Metric

        stamp, done = int(time.time() * 1000), self.state.setdefault("evaluated", [])
        metrics = []
        for name in (n for n in EVALUATIONS if n in results and n not in done):
            model_id = self.state.get("model_id") if name == "fine_tuned" else None
            values = flatten_results({name: results[name]})
            metrics += [Metric(k, v, stamp, 0, model_id=model_id) for k, v in values.items()]
            done.append(name)
        if metrics:
            with store.store_lock(self.uri):
                self.client.log_batch(self.run_id, metrics=metrics)

    def _log_comparison(self, results: Mapping[str, Any]) -> None:
        # Once, at the end: MLflow's log_table appends to a table logged before.
        table = comparison_rows(results)
        if table["metric"] and not self.state.get("comparison_logged"):
            self.client.log_table(self.run_id, table, COMPARISON_TABLE)
            self.state["comparison_logged"] = True

    def log_model(self, model_dir: Path) -> str:
        """Log `model_dir` as an MLflow logged model (this run its source; a PEFT adapter names its base).

        Returns:
            the logged model's id.
        """
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        info = json.loads((model_dir / "modelops.json").read_text())
        params = {"base_model": str(info["base_model"]), "task": str(info["task"]),
                  "adapter": str(bool(info.get("peft"))).lower()}  # fmt: skip
        adapter = model_dir / "adapter_config.json"
        if info.get("peft") and adapter.is_file():
            peft = json.loads(adapter.read_text())
            params |= {f"peft.{k}": _param(peft[k]) for k in _PEFT_PARAMS if peft.get(k) not in (None, [], {})}
        with store.store_lock(self.uri):
            model = self.client.create_logged_model(
                self.state["experiment_id"], name="model", source_run_id=self.run_id, params=params,
                tags={"base_model": params["base_model"], "run_dir": str(self.run_dir.resolve())},
                model_type="peft_adapter" if info.get("peft") else "transformers",
            )  # fmt: skip
            with tempfile.TemporaryDirectory() as staging:
                # model/base/ only links the base model's weights (for plain peft loading): modelops.json names it.
                for item in model_dir.iterdir():
                    if item.name != "base":
                        os.symlink(item.resolve(), Path(staging) / item.name)
                self.client.log_model_artifacts(model.model_id, staging)
            self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
            self.client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, 0)])
        self.state["model_id"] = model.model_id
        return model.model_id

    # -- the end -------------------------------------------------------------------------------

    def finish(self, status: str, results: dict[str, Any] | None = None, error: str | None = None) -> str | None:
        """Record the run's end: evaluation, inputs, model, artifacts, status; register the model on success.

        What the pipeline did not log while it ran (`log_datasets`, `log_evaluation`, `log_model`) is
        logged here from what it passes and what the run directory holds. A store that fails now only
        warns: the run directory holds the results either way.

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

        lineage = self.run_dir / "data" / "lineage.json"
        if not self.state.get("inputs_logged") and lineage.is_file():
            self.log_datasets(json.loads(lineage.read_text()))
        model_dir = self.run_dir / "model"
        trained = status == "succeeded" and (model_dir / "modelops.json").is_file()
        if trained and "model_id" not in self.state:
            self.log_model(model_dir)
        self.log_evaluation(results)
        self._log_comparison(results)
        self._log_artifacts()
        tags = [RunTag("status", status)]
        if "train" in results and "steps" in results["train"]:
            tags.append(RunTag("train.steps", str(results["train"]["steps"])))
        if error:
            tags.append(RunTag("error", error[:_MAX_TAG]))
        self.client.log_batch(self.run_id, tags=tags)
        registered = self._register(model_dir, results, self.state["model_id"]) if trained else None
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(status, "FAILED"))
        self.save_state()
        return registered

    def _log_artifacts(self) -> None:
        run_dir = self.run_dir
        for name, folder in _ARTIFACT_FILES:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name), folder or None)
        for plot in sorted(run_dir.glob("*confusion_matrix.png")):
            self.client.log_artifact(self.run_id, str(plot))
        for log in sorted(run_dir.glob("*.log")):  # the run's log (Hydra's job log, `__main__.log`)
            self.client.log_artifact(self.run_id, str(log), "logs")

    def _register(self, model_dir: Path, results: dict[str, Any], model_id: str) -> str:
        from mlflow.exceptions import MlflowException

        name = self.state["registry_name"]
        info = json.loads((model_dir / "modelops.json").read_text())
        try:
            self.client.create_registered_model(
                name, description=f"Models fine-tuned by modelops from {info['base_model']} ({info['task']}): "
                "each successful training is the next version; `promote` points an alias at one.")  # fmt: skip
        except MlflowException as exc:  # it exists already (maybe created a moment ago by another run)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags, description = version_facts(model_dir, results, self.run_dir)
        parent = self._parent_version(tags.get("continued_from"))
        if parent:
            tags["parent_model_version"] = parent
        # The logged model's own location: a `models:/<id>` source is looked up through MLflow's global
        # tracking URI (MlflowClient()), not this client's, and would open ./mlflow.db.
        source = self.client.get_logged_model(model_id).artifact_location
        version = self.client.create_model_version(name, source=source, run_id=self.run_id, tags=tags,
                                                   description=description, model_id=model_id)  # fmt: skip
        self.state["registered"] = {"name": name, "version": int(version.version)}
        self.client.set_tag(self.run_id, "registered_model", f"{name}/{version.version}")
        return f"{name}/{version.version}"

    def _parent_version(self, ref: str | None) -> str | None:
        """`NAME/VERSION` of the registered version training continued from (an alias may move later)."""
        parsed = parse_reference(ref or "")
        found = find_version(self.client, parsed, self.uri, quiet=True) if parsed else None
        return f"{found.name}/{found.version}" if found else None


def comparison_rows(results: Mapping[str, Any]) -> dict[str, list]:
    """Base vs fine-tuned, one row per metric both have or either has, as columns (MLflow's `log_table`).

    `delta` is fine-tuned minus base; `delta_low`/`delta_high` are its interval when the results carry
    one (`results["deltas"][metric]`: the paired bootstrap interval the evaluator computed), else empty.
    """
    base = flatten_results({"m": results.get("base") or {}})
    tuned = flatten_results({"m": results.get("fine_tuned") or {}})
    deltas = results.get("deltas") or {}
    columns: dict[str, list] = {k: [] for k in ("metric", "base", "fine_tuned", "delta", "delta_low", "delta_high")}
    for key in dict.fromkeys([*base, *tuned]):
        metric = key.removeprefix("m.")
        b, t = base.get(key), tuned.get(key)
        low, high = (deltas[metric]["low"], deltas[metric]["high"]) if metric in deltas else (None, None)
        for column, value in zip(columns, (metric, b, t, t - b if None not in (b, t) else None, low, high),
                                 strict=True):  # fmt: skip
            columns[column].append(value)
    return columns


def set_experiment_kind(client, experiment_id: str) -> None:
    """Tag the experiment as fine-tuning, unless someone chose its kind already."""
    from mlflow.exceptions import MlflowException

    key, value = EXPERIMENT_KIND
    if key in client.get_experiment(experiment_id).tags:
        return
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        # Two runs of a new experiment started together on a server (no lock of ours there): one of them set it.
        if key not in client.get_experiment(experiment_id).tags:
            raise


def version_facts(model_dir: Path, results: dict[str, Any], run_dir: Path) -> tuple[dict[str, str], str]:
    """The tags and description of a registered version: run directory, base model, data, eval metrics."""
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
    adapter = " (a PEFT adapter; load it on its base)" if info.get("peft") else ""
    scores = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return tags, f"Fine-tuned from {info['base_model']}{adapter}{data}. {scores}".strip()


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"trainer": {"epochs": 1}}` -> `{"trainer.epochs": "1"}`, every key as it is (see `run_params` for a run's)."""
    flat = flatten(config, prefix)
    return {k: (json.dumps(v) if isinstance(v, list) else str(v))[:MAX_PARAM] for k, v in flat.items()}


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
    from importlib.metadata import PackageNotFoundError, version

    try:
        modelops_version = version("modelops")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        modelops_version = "unknown"

    tags = {"status": "running", "modelops_version": modelops_version, "mlflow.source.name": "modelops"}
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


def _param(value: Any) -> str:
    return (json.dumps(sorted(value)) if isinstance(value, list) else str(value))[:MAX_PARAM]


def _last_steps(client, run_id: str) -> dict[str, int]:
    """Per metric, the last step MLflow holds for the run (a resumed run logs only later steps)."""
    run = client.get_run(run_id)
    return {key: max(m.step for m in client.get_metric_history(run_id, key)) for key in run.data.metrics}


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
