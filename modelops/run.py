"""The pipeline: one stage runner for the CLI and for `FineTuningJob`.

validate → track → load (→ sanitize) (→ evaluate the base model) (→ train → save) (→ evaluate) → register →
status. `python -m modelops` composes the config with Hydra and calls `run`; a `FineTuningJob` writes its
config (the dataset saved in the run directory, `stages: [train]`) to `job_spec.json` and starts
`python -m modelops.run RUN_DIR`, which calls the same `run`. `job.json` is written as the run goes, for
whoever watches; nothing here reads it back.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from modelops.config.construct import construct
from modelops.config.validate import check
from modelops.distributed import is_main_process
from modelops.errors import ConfigError, DataError, ModelopsError, report
from modelops.evaluate.results import EvalResults, comparison_table
from modelops.io import atomic_path, write_json
from modelops.log import say
from modelops.models.card import write_model_card
from modelops.registry.tracker import start_run
from modelops.rundir import claim, config_key, run_dir_override
from modelops.train.curve import write_loss_curve
from modelops.train.data import preview_text
from modelops.train.loop import train
from modelops.train.record import JobRecord
from modelops.train.stopping import StopRequest

#: The config a `FineTuningJob` runs, in its run directory.
SPEC_FILE = "job_spec.json"


def run(cfg, run_dir: str | Path, validated: bool = False) -> dict[str, Any]:
    """Run the stages of a composed config in `run_dir`; return the results (`base`, `train`, `fine_tuned`).

    `results["registered_model"]` is `NAME/VERSION` when a trained model was registered. `validated`: the
    caller already ran `modelops.config.validate.check` on this very config (`CheckBeforeRunDir`).

    Raises:
        ModelopsError: a bad config, data or model, with the failed state in `job.json`.
        KeyboardInterrupt: SIGTERM/SIGINT (`TrainingCancelled` after a checkpoint), recorded as cancelled.
    """
    run_dir = Path(run_dir)
    key = claim_run_dir(cfg, run_dir)  # before anything is written there
    record = JobRecord(run_dir / "job.json", enabled=is_main_process())
    # A resumed run keeps its events, not the error of its last attempt.
    record.update(status="validating", pid=os.getpid(), config_key=key, error=None, finished_at=None)
    tracker = None
    try:
        # Until the training loop takes the signals over (to finish its step and checkpoint), they stop at once.
        with StopRequest(defer=False):
            if not validated:
                check(cfg)  # before anything heavy is imported or loaded
            tracker = _start_tracking(cfg, run_dir)  # a store that cannot be written fails here, before training
            results = _run_stages(cfg, run_dir, record, tracker)
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        error = str(exc) if isinstance(exc, ModelopsError | KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        record.update(status=status, error=error, **finish_tracking(tracker, run_dir, status, error=error))
        raise
    tracked = finish_tracking(tracker, run_dir, "succeeded", results)
    record.update(status="succeeded", progress=1.0, metrics=results, **tracked)
    if tracked:
        results["registered_model"] = tracked["registered_model"]
    return results


def run_job(run_dir: str | Path) -> int:
    """Run the config a `FineTuningJob` wrote to `RUN_DIR/job_spec.json`; return the process's exit code.

    Running it again on the same directory resumes the training from its last checkpoint (`trainer.resume: auto`).
    """
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    cfg = OmegaConf.create(json.loads((run_dir / SPEC_FILE).read_text()))
    try:
        run(cfg, run_dir)
    except KeyboardInterrupt:  # TrainingCancelled is one too: recorded as cancelled
        return 1
    except ModelopsError as exc:
        say(f"error: {exc}", err=True)
        return 2
    except Exception:
        traceback.print_exc()
        return 1
    return 0


class CheckBeforeRunDir(Callback):
    """Checks a single run's config, as `hydra.main` composed it (the only composition), before Hydra creates
    the run directory: a config error leaves nothing behind and exits 2. A `hydra.run.dir=` named on the
    command line is claimed here too (`claim_run_dir`). Registered in conf/config.yaml (`hydra.callbacks`);
    `run` then does not check again (`checked_before_run_dir`). A multirun's trials check their own configs.
    """

    def on_run_start(self, config, **kwargs: Any) -> None:
        from omegaconf import open_dict, read_write

        job = copy.deepcopy(config)
        with read_write(job), open_dict(job):
            del job["hydra"]
        try:
            check(job)
            named = run_dir_override(sys.argv)
            if named:
                claim_run_dir(job, named)
        except ModelopsError as exc:
            print(report(exc), file=sys.stderr)  # not `say`: Hydra's own logging would print it a second time
            sys.exit(2)


def checked_before_run_dir() -> bool:
    """Whether `CheckBeforeRunDir` checked this Hydra job's config (a single run with the callback configured)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    targets = {node.get("_target_") for node in (hydra.callbacks or {}).values()}
    return hydra.mode == RunMode.RUN and "modelops.run.CheckBeforeRunDir" in targets


def claim_run_dir(cfg, run_dir: str | Path) -> str:
    """Refuse `run_dir` when it holds a run with another config (`overwrite=true` moves that run aside).

    Returns the run's config key (what `job.json` records to recognise a resume of the same run).
    """
    from omegaconf import OmegaConf

    overwrite = cfg.get("overwrite") or False
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite: expected true or false, got {overwrite!r}")
    key = config_key(OmegaConf.to_container(cfg, resolve=False))
    if is_main_process():
        claim(run_dir, key, overwrite=overwrite)
    return key


def _start_tracking(cfg, run_dir: Path):
    """The run's MLflow tracker (main process only), or None with `tracking=none`."""
    from omegaconf import OmegaConf

    if not is_main_process():
        return None
    settings = construct(cfg.tracking, "tracking")
    registry = construct(cfg.registry, "registry")
    config = OmegaConf.to_container(cfg, resolve=True)
    return start_run(settings, run_dir, config, _recipe_name(), registry.name, cfg.trainer.log_with, _overrides())


def _recipe_name() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get("recipe") if HydraConfig.initialized() else None


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def finish_tracking(tracker, run_dir: Path, status: str, results=None, error=None) -> dict[str, Any]:
    """Draw `loss_curve.png` and record the outcome in MLflow; never raises (the run's own result comes first).

    Called before the final status reaches `job.json`, so whoever sees that status also finds the
    registered version. Returns the fields `job.json` gets from it (`registered_model`).
    """
    if not is_main_process():
        return {}

    try:
        write_loss_curve(run_dir)
    except OSError as exc:
        warnings.warn(f"{run_dir}/loss_curve.png: not written ({exc})", stacklevel=2)
    registered = tracker.finish(status, results, error) if tracker is not None else None
    return {"registered_model": registered} if registered else {}


def _run_stages(cfg, run_dir: Path, record: JobRecord, tracker) -> dict[str, Any]:
    _quiet_libraries()
    stages = list(cfg.stages)
    allowed = tuple(cfg.allowed_targets or ())
    # Dependency order: the data first, the model spec before the trainer and the evaluator. `run` checked the
    # whole config (`check`) already: `construct` builds each group without checking it again.
    dataset = construct(cfg.dataset, "dataset", allowed)
    spec = construct(cfg.model, "model", allowed)
    trainer = construct(cfg.trainer, "trainer", allowed) if "train" in stages or "preview" in stages else None
    evaluator = construct(cfg.evaluator, "evaluator", allowed) if {"evaluate", "preview"} & set(stages) else None
    data_dir = run_dir / "data"
    lineage = {"loaded": dataset.lineage(), "load_report": dataset.load_report}
    if is_main_process():
        _save_skipped(dataset, data_dir)
    if "sanitize" in stages:
        dataset = _sanitize(cfg, dataset, data_dir)
        lineage["sanitized"] = dataset.lineage()
    if is_main_process():
        write_json(data_dir / "lineage.json", lineage)
    _tell(tracker, lambda t: t.log_datasets(lineage))  # what the model trains on, sanitized splits first
    results: dict[str, Any] = {}
    if "preview" in stages:
        _preview(dataset, spec, trainer, data_dir, evaluator.preview(spec.name_or_path, dataset))
    base = None
    if "evaluate" in stages:
        base = _evaluate(evaluator, spec.name_or_path, dataset, run_dir / "base_predictions.jsonl")
        results["base"] = base.to_dict()
        _tell(tracker, lambda t: t.log_evaluation(results))
    if "train" in stages:
        results.update(_train(cfg, spec, dataset, trainer, evaluator, base, run_dir, record, tracker))
    if is_main_process() and "evaluate" in stages:
        write_json(run_dir / "eval.json", results)
    return results


def _quiet_libraries() -> None:
    import datasets
    import transformers

    # Per-map bars and weight-loading reports drown the training bar and the report table.
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _evaluate(evaluator, model, dataset, predictions: Path):
    results = evaluator.evaluate(model, dataset)
    if is_main_process():
        results.save_predictions(predictions)
    return results


def _train(cfg, spec, dataset, trainer, evaluator, base, run_dir: Path, record: JobRecord, tracker) -> dict[str, Any]:
    """Train, evaluate the result against `base` (with an evaluator), write the model card; the results."""
    from omegaconf import OmegaConf

    # The tracker's sink logs each training row to MLflow as it is written: a live curve.
    trained = train(spec, dataset, trainer, run_dir, record, metric_sinks=[tracker.sink] if tracker else [])
    results: dict[str, Any] = {"train": {"steps": trained.steps, "final_loss": trained.final_loss,
                                         "tokens_per_s": trained.tokens_per_second,
                                         "model_dir": str(trained.model_dir)}}  # fmt: skip
    if base is not None:
        tuned = _evaluate(evaluator, trained.model_dir, dataset, run_dir / "predictions.jsonl")
        results["fine_tuned"] = tuned.to_dict()
        results["deltas"] = evaluator.compare(base, tuned)  # paired intervals of each per-example metric
    if is_main_process():
        write_model_card(trained.model_dir, OmegaConf.to_yaml(cfg), _metrics_only(results))
    # The model with its card, then the scores linked to it.
    _tell(tracker, lambda t: (t.log_model(trained.model_dir), t.log_evaluation(results)))
    return results


def _tell(tracker, call) -> None:
    """Hand the tracker what the run holds now; a store that fails only warns (the run directory is the record)."""
    if tracker is None:
        return
    try:
        call(tracker)
    except Exception as exc:
        warnings.warn(f"tracking: {type(exc).__name__}: {exc}; the run directory holds the results", stacklevel=2)


def _save_skipped(dataset, data_dir: Path) -> None:
    """Rows skipped while loading (on_error=skip): counted on the console, each one kept in data/skipped.jsonl."""
    lines = dataset.skip_summary()
    if not lines:
        return
    with atomic_path(data_dir / "skipped.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in dataset.skipped_rows():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    say("\n".join([*lines, f"every skipped line (file, line, reason, raw text): {data_dir / 'skipped.jsonl'}"]))


def _sanitize(cfg, dataset, data_dir: Path):
    sanitizer = construct(cfg.sanitizer, "sanitizer", tuple(cfg.allowed_targets or ()))
    clean = sanitizer.sanitize(dataset)
    if is_main_process():
        sanitizer.report.save(data_dir)
        say(sanitizer.report.table())
    emptied = [name for name in clean.split_names if len(clean[name]) == 0 and len(dataset[name]) > 0]
    if emptied:
        raise DataError(
            f"after sanitizing, split(s) {emptied} have no rows left; the sanitizer report and the rejected rows "
            f"with their reasons are in {data_dir}/sanitize_report.json and rejected.jsonl"
        )
    return clean


def _preview(dataset, spec, trainer, data_dir: Path, eval_prompt: str | None) -> None:
    text = preview_text(dataset, spec, trainer, max(trainer.preview_examples, 3))
    text += f"\n\n{eval_prompt}" if eval_prompt else ""
    if is_main_process():
        with atomic_path(data_dir / "train_preview.txt") as tmp:
            tmp.write_text(text + "\n")
        say(text)


def _metrics_only(results: dict[str, Any]) -> dict[str, Any]:
    return {name: r["metrics"] for name, r in results.items() if isinstance(r, dict) and "metrics" in r}


def summary(results: dict[str, Any], run_dir: Path) -> str:
    """A few lines for the terminal: metrics before/after, where the model is, the registered version."""
    lines = [f"run directory: {run_dir}"]
    evals = {k: EvalResults(**{**v, "predictions": []}) for k, v in results.items() if k in ("base", "fine_tuned")}
    if evals:
        lines.append(comparison_table(evals, results.get("deltas")))
    if "train" in results:
        lines.append(f"model: {results['train']['model_dir']}")
    if results.get("registered_model"):
        lines.append(f"registered: {results['registered_model']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
