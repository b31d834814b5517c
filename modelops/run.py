"""The pipeline: validate the composed config, instantiate each group, run the stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops.config.build import instantiate
from modelops.config.validate import check_model_reference, validate
from modelops.distributed import is_main_process
from modelops.errors import DataError
from modelops.io import write_json
from modelops.log import say
from modelops.train.record import JobRecord, read_job


def run(cfg, run_dir: str | Path) -> dict[str, Any]:
    """Run the stages of a composed config in `run_dir`; return the evaluation metrics.

    Raises:
        ModelopsError: a bad config, data or model, with the failed state in `job.json`.
    """
    run_dir = Path(run_dir)
    record = JobRecord(run_dir / "job.json", enabled=is_main_process())
    record.update(status="validating")
    tracker = None
    try:
        validate(cfg)  # before anything heavy is imported or loaded
        check_model_reference(cfg)
        tracker = _start_tracking(cfg, run_dir)  # a store that cannot be written fails here, before training
        results = _run_stages(cfg, run_dir, record, [tracker.sink] if tracker else [])
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        record.update(status=status, error=str(exc), **finish_tracking(tracker, run_dir, status, error=str(exc)))
        raise
    tracked = finish_tracking(tracker, run_dir, "succeeded", results)
    record.update(status="succeeded", progress=1.0, metrics=results, **tracked)
    return results


def _start_tracking(cfg, run_dir: Path):
    """The run's MLflow tracker (main process only), or None with `tracking=none`."""
    from omegaconf import OmegaConf

    from modelops.registry.tracker import start_run

    if not is_main_process():
        return None
    settings = instantiate(cfg.tracking, "tracking")
    registry = instantiate(cfg.registry, "registry")
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
    import warnings

    from modelops.train.curve import write_loss_curve

    try:
        write_loss_curve(run_dir)
    except OSError as exc:
        warnings.warn(f"{run_dir}/loss_curve.png: not written ({exc})", stacklevel=2)
    registered = tracker.finish(status, results, error) if tracker is not None else None
    return {"registered_model": registered} if registered else {}


def _run_stages(cfg, run_dir: Path, record: JobRecord, sinks=()) -> dict[str, Any]:
    import datasets
    import transformers
    from omegaconf import OmegaConf

    # Per-map bars and weight-loading reports drown the training bar and the report table.
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    stages = list(cfg.stages)
    allowed = tuple(cfg.allowed_targets or ())
    # Dependency order: the data first, the model spec before the trainer and the evaluator.
    dataset = instantiate(cfg.dataset, "dataset", allowed)
    spec = instantiate(cfg.model, "model", allowed)
    trainer = instantiate(cfg.trainer, "trainer", allowed)
    evaluator = instantiate(cfg.evaluator, "evaluator", allowed)
    data_dir = run_dir / "data"
    if is_main_process():
        _save_loaded(dataset, data_dir)
    if "sanitize" in stages:
        dataset = _sanitize(cfg, dataset, data_dir)
    results: dict[str, Any] = {}
    if "preview" in stages:
        _preview(dataset, spec, trainer, data_dir)
    if "evaluate" in stages:
        base = evaluator.evaluate(spec.name_or_path, dataset)
        if is_main_process():
            base.save_predictions(run_dir / "base_predictions.jsonl")
        results["base"] = base.to_dict()
    if "train" in stages:
        from modelops.train.loop import train

        trained = train(spec, dataset, trainer, run_dir, record, metric_sinks=sinks)
        results["train"] = {"steps": trained.steps, "final_loss": trained.final_loss,
                            "tokens_per_s": trained.tokens_per_second, "model_dir": str(trained.model_dir)}  # fmt: skip
        if "evaluate" in stages:
            tuned = evaluator.evaluate(trained.model_dir, dataset)
            if is_main_process():
                tuned.save_predictions(run_dir / "predictions.jsonl")
            results["fine_tuned"] = tuned.to_dict()
        if is_main_process():
            from modelops.models.card import write_model_card

            write_model_card(trained.model_dir, OmegaConf.to_yaml(cfg), _metrics_only(results))
    if is_main_process() and "evaluate" in stages:
        write_json(run_dir / "eval.json", results)
    return results


def _save_loaded(dataset, data_dir: Path) -> None:
    """Lineage and load report in data/; rows skipped while loading (on_error=skip) printed and kept."""
    import json

    from modelops.io import atomic_path

    write_json(data_dir / "lineage.json", {"loaded": dataset.lineage(), "load_report": dataset.load_report})
    lines = dataset.skip_summary()
    if not lines:
        return
    with atomic_path(data_dir / "skipped.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in dataset.skipped_rows():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    say("\n".join([*lines, f"every skipped line (file, line, reason, raw text): {data_dir / 'skipped.jsonl'}"]))


def _sanitize(cfg, dataset, data_dir: Path):
    sanitizer = instantiate(cfg.sanitizer, "sanitizer", tuple(cfg.allowed_targets or ()))
    clean = sanitizer.sanitize(dataset)
    if is_main_process():
        sanitizer.report.save(data_dir)
        lineage = {"loaded": dataset.lineage(), "load_report": dataset.load_report, "sanitized": clean.lineage()}
        write_json(data_dir / "lineage.json", lineage)
        say(sanitizer.report.table())
    emptied = [name for name in clean.split_names if len(clean[name]) == 0 and len(dataset[name]) > 0]
    if emptied:
        raise DataError(
            f"after sanitizing, split(s) {emptied} have no rows left; the sanitizer report and the rejected rows "
            f"with their reasons are in {data_dir}/sanitize_report.json and rejected.jsonl"
        )
    return clean


def _preview(dataset, spec, trainer, data_dir: Path) -> None:
    from modelops.io import atomic_path
    from modelops.train.data import preview_text

    text = preview_text(dataset, spec, trainer, max(trainer.preview_examples, 3))
    if is_main_process():
        with atomic_path(data_dir / "train_preview.txt") as tmp:
            tmp.write_text(text + "\n")
        say(text)


def _metrics_only(results: dict[str, Any]) -> dict[str, Any]:
    return {name: r["metrics"] for name, r in results.items() if isinstance(r, dict) and "metrics" in r}


def summary(results: dict[str, Any], run_dir: Path) -> str:
    """A few lines for the terminal: metrics before/after and where the model is."""
    from modelops.evaluate.results import EvalResults, comparison_table

    lines = [f"run directory: {run_dir}"]
    evals = {k: EvalResults(**{**v, "predictions": []}) for k, v in results.items() if k in ("base", "fine_tuned")}
    if evals:
        lines.append(comparison_table(evals))
    if "train" in results:
        lines.append(f"model: {results['train']['model_dir']}")
    job_file = Path(run_dir) / "job.json"
    registered = read_job(job_file).get("registered_model") if job_file.exists() else None
    if registered:
        lines.append(f"registered: {registered}")
    return "\n".join(lines)
