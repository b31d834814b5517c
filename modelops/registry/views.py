"""What each `modelops.registry` command shows, as plain data (for `--json`) and as a table."""

from __future__ import annotations

import re
from typing import Any

from modelops.errors import ConfigError, ModelError
from modelops.registry import store
from modelops.registry.refs import Reference, find_version, parse_reference
from modelops.registry.settings import sqlite_path, store_uri

#: Metrics `runs` shows as columns, when runs have them.
KEY_METRICS = ("fine_tuned.accuracy", "fine_tuned.f1", "fine_tuned.perplexity", "train.final_loss")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RESERVED_ALIAS = "latest"


def _client(args):
    uri = store_uri(args.tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise ConfigError(f"no tracking store at {path}: nothing recorded here yet (run from the folder that holds "
                          "outputs/, set MLFLOW_TRACKING_URI or pass --tracking-uri)")  # fmt: skip
    store.check_store(uri)
    return store.client(uri), uri


def runs(args) -> list[dict[str, Any]]:
    client, _ = _client(args)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    ids = [i for i, name in experiments.items() if args.experiment in (None, name)]
    if not ids:
        raise ConfigError(f"--experiment {args.experiment!r}: no such experiment; experiments: "
                          f"{sorted(experiments.values())}")  # fmt: skip
    found = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=args.limit)
    return [_run_summary(run, experiments[run.info.experiment_id]) for run in found]


def _run_summary(run, experiment: str) -> dict[str, Any]:
    info, tags = run.info, run.data.tags
    duration = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    return {
        "run_id": info.run_id, "experiment": experiment, "name": info.run_name,
        "status": tags.get("status", info.status.lower()), "recipe": tags.get("recipe"),
        "metrics": {k: run.data.metrics[k] for k in KEY_METRICS if k in run.data.metrics},
        "duration_s": duration, "registered": tags.get("registered_model"), "run_dir": tags.get("run_dir"),
    }  # fmt: skip


def models(args) -> list[dict[str, Any]]:
    client, _ = _client(args)
    out = []
    for model in client.search_registered_models():
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model.name}'"))
        out.append({"name": model.name, "versions": len(versions), "latest": versions[-1] if versions else None,
                    "aliases": {alias: int(v) for alias, v in sorted(model.aliases.items())}})  # fmt: skip
    return out


def show(args) -> dict[str, Any]:
    client, uri = _client(args)
    version = find_version(client, _reference(args.model), uri)
    run = client.get_run(version.run_id) if version.run_id else None
    return {
        "name": version.name, "version": int(version.version), "aliases": list(version.aliases),
        "run_id": version.run_id, "status": run.data.tags.get("status") if run else None,
        "source": version.source, "description": version.description, "tags": dict(sorted(version.tags.items())),
        "metrics": dict(sorted(run.data.metrics.items())) if run else {},
    }  # fmt: skip


def compare(args) -> dict[str, Any]:
    client, uri = _client(args)
    a, b = (client.get_run(_run_id(client, uri, ref)) for ref in (args.a, args.b))
    pa, pb = a.data.params, b.data.params
    params = [[k, pa.get(k), pb.get(k)] for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)]
    ma, mb = a.data.metrics, b.data.metrics
    metrics = [[k, ma.get(k), mb.get(k), mb[k] - ma[k] if k in ma and k in mb else None]
               for k in sorted(set(ma) | set(mb))]  # fmt: skip
    return {"a": {"ref": args.a, "run_id": a.info.run_id}, "b": {"ref": args.b, "run_id": b.info.run_id},
            "params": params, "metrics": metrics}  # fmt: skip


def _run_id(client, uri: str, ref: str) -> str:
    if _RUN_ID.match(ref):
        return ref
    version = find_version(client, _reference(ref), uri)
    if not version.run_id:
        raise ModelError(f"{ref}: this version records no run")
    return version.run_id


def promote(args) -> dict[str, Any]:
    client, uri = _client(args)
    if args.alias.lower() == _RESERVED_ALIAS:
        raise ConfigError(f"alias {args.alias!r} is reserved by MLflow: {args.name}@latest always means the newest "
                          "version; choose another alias (champion, staging, ...)")  # fmt: skip
    version = find_version(client, Reference(args.name, args.version), uri)
    client.set_registered_model_alias(args.name, args.alias, version.version)
    return {"name": args.name, "alias": args.alias, "version": int(version.version)}


def lineage(args, depth: int = 0) -> dict[str, Any]:
    client, uri = _client(args)
    return _lineage(client, uri, _reference(args.model), depth)


def _lineage(client, uri: str, ref: Reference, depth: int) -> dict[str, Any]:
    version = find_version(client, ref, uri)
    run = client.get_run(version.run_id)
    data = [{"name": d.dataset.name, "fingerprint": _fingerprint(d.dataset), "profile": d.dataset.profile,
             "context": {t.key: t.value for t in d.tags}.get("mlflow.data.context")}
            for d in run.inputs.dataset_inputs]  # fmt: skip
    parent = version.tags.get("parent_model_version")
    out = {"model": f"{version.name}/{version.version}", "run_id": version.run_id,
           "run_dir": version.tags.get("run_dir"), "sweep_run_id": run.data.tags.get("mlflow.parentRunId"),
           "base_model": version.tags.get("base_model"), "continued_from": parent, "data": data}  # fmt: skip
    if parent and depth < 10:  # the registered version training started from, and its own lineage
        out["parent_lineage"] = _lineage(client, uri, parse_reference(parent), depth + 1)
    return out


def _fingerprint(dataset) -> str:
    import json

    try:
        return json.loads(dataset.source)["fingerprint"]
    except (ValueError, KeyError, TypeError):
        return dataset.digest


def _reference(text: str) -> Reference:
    ref = parse_reference(text)
    if ref is None:
        raise ConfigError(f"{text!r} is not a model reference (NAME, NAME/3, NAME@alias, models:/NAME/3)")
    return ref


# -- tables ------------------------------------------------------------------------------------


def render(command: str, data: Any) -> str:
    from modelops.registry.cli import table

    if command == "runs":
        keys = [k for k in KEY_METRICS if any(k in r["metrics"] for r in data)]
        rows = [[r["run_id"][:12], r["experiment"], r["status"], r["recipe"], *(r["metrics"].get(k) for k in keys),
                 _seconds(r["duration_s"]), r["registered"]] for r in data]  # fmt: skip
        return table(["run", "experiment", "status", "recipe", *keys, "duration", "registered"], rows)
    if command == "models":
        rows = [[m["name"], m["versions"], m["latest"], ", ".join(f"{a}->{v}" for a, v in m["aliases"].items())]
                for m in data]  # fmt: skip
        return table(["name", "versions", "latest", "aliases"], rows)
    if command == "compare":
        params = table(["param", data["a"]["ref"], data["b"]["ref"]], data["params"])
        metrics = table(["metric", data["a"]["ref"], data["b"]["ref"], "delta"], data["metrics"])
        return f"config differences\n{params}\n\nmetrics\n{metrics}"
    if command == "promote":
        return f"{data['name']}@{data['alias']} -> version {data['version']}"
    return _render_nested(data)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f}s"


def _render_nested(data: dict[str, Any], indent: str = "") -> str:
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            lines += [f"{indent}{key}:", _render_nested(value, indent + "  ")]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items()) for item in value]
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)
