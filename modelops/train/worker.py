"""`python -m modelops.train.worker RUN_DIR`: the process a `FineTuningJob` starts.

It reads the job's inputs from the run directory, validates them (status `validating`), trains
(`running`) and records the outcome (`succeeded`, `failed` with the error, or `cancelled` on
SIGTERM/SIGINT) in `job.json`. During training a signal first lets the loop finish its step and
write a checkpoint; running the worker again on the same directory resumes from it
(`trainer.resume: auto`, the default).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from modelops.distributed import is_main_process
from modelops.errors import ModelopsError
from modelops.run import finish_tracking
from modelops.train.record import JobRecord
from modelops.train.stopping import StopRequest


def _validate_and_load(run_dir: Path):
    from modelops.config.build import instantiate
    from modelops.config.validate import DEFAULT_ALLOWED, check_node
    from modelops.data.dataset import Dataset
    from modelops.models.resolve import resolve_name_or_path

    spec_doc = json.loads((run_dir / "job_spec.json").read_text())
    for group in ("model", "trainer"):
        check_node(group, spec_doc[group], DEFAULT_ALLOWED)
    spec = instantiate(spec_doc["model"], "model")
    config = instantiate(spec_doc["trainer"], "trainer")
    resolve_name_or_path(spec.name_or_path)  # an unknown model fails here, before any loading
    dataset = Dataset.load_from_disk(run_dir / "data" / "input")
    return spec, config, dataset


def main(run_dir: str) -> int:
    import datasets

    run_dir = Path(run_dir)
    # Under `accelerate launch` every rank runs this; only the first one writes job.json.
    record = JobRecord(run_dir / "job.json", enabled=is_main_process())
    datasets.disable_progress_bars()
    tracker = None
    try:
        # Until the loop takes the signals over (to finish its step and checkpoint), they stop at once.
        with StopRequest(defer=False):
            record.update(status="validating", pid=os.getpid())
            spec, config, dataset = _validate_and_load(run_dir)
            tracker = _start_tracking(run_dir, dataset, config)  # a store that cannot be written fails before training
            from modelops.train.loop import train

            result = train(spec, dataset, config, run_dir, record, metric_sinks=[tracker.sink] if tracker else [])
    except KeyboardInterrupt as exc:  # TrainingCancelled is one too
        return _end(record, tracker, run_dir, 1, "cancelled", error=f"cancelled by {exc}")
    except ModelopsError as exc:
        return _end(record, tracker, run_dir, 2, "failed", error=str(exc))
    except Exception as exc:
        traceback.print_exc()
        return _end(record, tracker, run_dir, 1, "failed", error=f"{type(exc).__name__}: {exc}")
    metrics = {"steps": result.steps, "final_loss": result.final_loss, "tokens_per_s": result.tokens_per_second}
    return _end(record, tracker, run_dir, 0, "succeeded", metrics=metrics, model_dir=str(result.model_dir))


def _end(record: JobRecord, tracker, run_dir: Path, code: int, status: str, **fields) -> int:
    """Record the outcome in MLflow first, then the final status in `job.json`; return the exit code."""
    results = {"train": fields["metrics"]} if "metrics" in fields else None
    tracked = finish_tracking(tracker, run_dir, status, results, fields.get("error"))
    if status == "succeeded":
        fields["progress"] = 1.0
    record.update(status=status, **fields, **tracked)
    return code


def _start_tracking(run_dir: Path, dataset, config):
    """The job's MLflow run (first process only); none for a job spec written without tracking."""
    from modelops.config.build import instantiate
    from modelops.io import write_json
    from modelops.registry.tracker import start_run

    spec_doc = json.loads((run_dir / "job_spec.json").read_text())
    if not is_main_process() or "tracking" not in spec_doc:
        return None
    if not (run_dir / "data" / "lineage.json").exists():
        write_json(run_dir / "data" / "lineage.json", {"input": dataset.lineage()})
    settings = instantiate(spec_doc["tracking"], "tracking")
    return start_run(settings, run_dir, spec_doc, None, spec_doc["registry"]["name"], config.log_with)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
