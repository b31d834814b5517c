"""The lifecycle store: every run tracked in MLflow, every trained model a registered version.

This package is the only place modelops imports mlflow, and it does so through MLflow's client
API (`MlflowClient`) only. The run directory stays the source of truth: the store indexes it
(params, metrics, dataset inputs, artifacts, registered versions) and never holds the only copy.

- `modelops.registry.settings`: the `tracking` and `registry` config nodes (no mlflow import).
- `modelops.registry.tracker`: one MLflow run per modelops run (`start_run`, `RunTracker.sink` while
  training, `log_datasets`/`log_evaluation`/`log_model`, `RunTracker.finish`).
- `modelops.registry.params`: what a run shows as params, name and description.
- `modelops.registry.refs`: model references `NAME`, `NAME@alias`, `NAME/3`, `models:/NAME/3`.
- `python -m modelops.registry`: `runs`, `models`, `show`, `compare`, `promote`, `lineage`.
"""

from __future__ import annotations

from modelops.registry.refs import registered_model_dir as _lookup
from modelops.registry.refs import registered_version


def registered_model_dir(ref: str) -> str | None:
    """The local directory of the registered model version `ref` names, or None when it names none.

    See `modelops.registry.refs.registered_model_dir`.
    """
    return _lookup(ref)


def is_registered(ref: str) -> bool:
    """Whether `ref` names a registered model version (looked up, nothing downloaded).

    Raises:
        ModelError: as `registered_model_dir` does.
    """
    return registered_version(ref) is not None
