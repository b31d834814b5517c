"""What each `modelops.registry` command shows, as plain data (for `--json`) and as a table."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ModelError
from modelops.flatten import is_number
from modelops.registry import store
from modelops.registry.refs import Reference, find_version, parse_reference
from modelops.registry.settings import sqlite_path, store_uri
from modelops.tables import render as table

#: Metrics `runs` shows as columns, when runs have them (`loss`: the last training loss logged).
KEY_METRICS = ("fine_tuned.accuracy", "fine_tuned.f1", "fine_tuned.perplexity", "loss")
#: Curves whose last value says nothing about a run (the schedule's end, the last epoch): not compared.
_NOT_COMPARED = ("lr", "epoch")
#: Characters of a content fingerprint shown in tables (`--json` has them whole).
FINGERPRINT_CHARS = 12
_DIGITS = 4
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
    metrics = metric_rows(a.data.metrics, b.data.metrics)
    return {"a": {"ref": args.a, "run_id": a.info.run_id}, "b": {"ref": args.b, "run_id": b.info.run_id},
            "params": params, "metrics": metrics, "paired": paired_comparison(a, b)}  # fmt: skip


def paired_comparison(run_a, run_b) -> dict[str, Any]:
    """Per-example comparison of two runs' fine-tuned predictions (`modelops.stats.paired_metrics`): the paired
    bootstrap interval of the delta of each per-example metric they carry (accuracy, exact match, preference and
    reward accuracy, reward margin, loss, perplexity, bits per byte), McNemar's exact p-value for right/wrong ones.

    Needs both runs' `predictions.jsonl` on this machine and the same evaluation rows in the same order;
    otherwise `{"note": why}`.
    """
    from modelops.stats import paired_metrics  # numpy: not on the path of `python -m modelops` startup

    rows = [_predictions(run) for run in (run_a, run_b)]
    if any(r is None for r in rows):
        return {"note": "per-example intervals need both runs' predictions.jsonl on this machine"}
    a, b = rows
    keys = ("text", "label", "prompt", "reference", "row")
    same = len(a) == len(b) and all(
        tuple(x.get(k) for k in keys) == tuple(y.get(k) for k in keys) for x, y in zip(a, b, strict=True)
    )
    if not same:
        return {"note": "not evaluated on the same rows: no paired comparison"}
    return paired_metrics(a, b) or {"note": "no scored rows to compare"}


def _predictions(run) -> list[dict[str, Any]] | None:
    path = Path(run.data.tags.get("run_dir", "")) / "predictions.jsonl"
    if not run.data.tags.get("run_dir") or not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def metric_rows(ma: dict[str, float], mb: dict[str, float]) -> list[list[Any]]:
    """`[metric, a, b, b - a]` rows: what changed first (the largest relative change first: metrics have
    different scales), then what one run lacks, then what is equal; `lr` and `epoch` left out."""
    keys = sorted(k for k in set(ma) | set(mb) if k not in _NOT_COMPARED)
    rows = [[k, ma.get(k), mb.get(k), mb[k] - ma[k] if k in ma and k in mb else None] for k in keys]

    def order(row: list[Any]) -> tuple[int, float]:
        if row[3] is None:
            return 1, 0.0
        scale = max(abs(row[1]), abs(row[2]))
        return (2, 0.0) if row[3] == 0 else (0, -abs(row[3]) / scale)

    return sorted(rows, key=order)


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
    data = [{"name": d.dataset.name, "fingerprint": _fingerprint(d.dataset), "rows": _rows(d.dataset.profile),
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
    try:
        return json.loads(dataset.source)["fingerprint"]
    except (ValueError, KeyError, TypeError):
        return dataset.digest


def _rows(profile: str | None) -> int | None:
    try:
        return int(json.loads(profile or "")["num_rows"])
    except (ValueError, KeyError, TypeError):
        return None


def _reference(text: str) -> Reference:
    ref = parse_reference(text)
    if ref is None:
        raise ConfigError(f"{text!r} is not a model reference (NAME, NAME/3, NAME@alias, models:/NAME/3)")
    return ref


# -- tables ------------------------------------------------------------------------------------


def render(command: str, data: Any) -> str:
    """The table or listing a person reads: values rounded, absent values left out, fingerprints short."""
    if command == "runs":
        keys = [k for k in KEY_METRICS if any(k in r["metrics"] for r in data)]
        rows = [[r["run_id"][:12], _clip(r["name"], 48), r["status"], *(_number(r["metrics"].get(k)) for k in keys),
                 _seconds(r["duration_s"]), r["registered"]] for r in data]  # fmt: skip
        return table(["run", "name", "status", *keys, "duration", "registered"], rows, right=range(3, 4 + len(keys)))
    if command == "models":
        rows = [[m["name"], m["versions"], m["latest"], ", ".join(f"{a}->{v}" for a, v in m["aliases"].items())]
                for m in data]  # fmt: skip
        return table(["name", "versions", "latest", "aliases"], rows, right=(1, 2))
    if command == "compare":
        return _render_compare(data)
    if command == "promote":
        return f"{data['name']}@{data['alias']} -> version {data['version']}"
    if command == "show":
        return _render_show(data)
    return _render_lineage(data)


def _render_compare(data: dict[str, Any]) -> str:
    a, b = data["a"]["ref"], data["b"]["ref"]
    params = table(["param", a, b], data["params"], absent="(absent)") if data["params"] else "(none)"
    rows = []
    for name, va, vb, delta in data["metrics"]:
        decimals = _decimals(va, vb)
        rows.append([name, _fixed(va, decimals), _fixed(vb, decimals), _fixed(delta, decimals, sign=True)])
    metrics = table(["metric", a, b, "delta"], rows, right=(1, 2, 3))
    paired = f"\n\n{_render_paired(data['paired'])}" if data.get("paired") else ""
    return f"config differences\n{params}\n\nmetrics\n{metrics}{paired}"


def _render_paired(paired: dict[str, Any]) -> str:
    if "note" in paired:
        return f"per example: {paired['note']}"
    lines = []
    for name, d in paired.items():
        mark = "  ~ the interval includes 0: may be noise" if d["includes_zero"] else ""
        p = f", McNemar p={d['mcnemar_p']:.3g}" if "mcnemar_p" in d else ""
        lines.append(
            f"per example, {name} (n={d['n']}): delta {d['delta']:+.4f}, {d['confidence']:.0%} paired bootstrap "
            f"interval [{d['low']:+.4f}, {d['high']:+.4f}]{p}{mark}"
        )
    return "\n".join(lines)


def _render_show(data: dict[str, Any]) -> str:
    tags = {k: _short(k, v) for k, v in data["tags"].items() if not k.startswith("metric.")}  # the metrics follow
    facts = {k: data[k] for k in ("name", "version", "aliases", "run_id", "status", "source", "description")}
    metrics = {k: _number(v) for k, v in data["metrics"].items() if k not in _NOT_COMPARED}
    return _render_nested({**facts, "tags": tags, "metrics": metrics})


def _render_lineage(data: dict[str, Any]) -> str:
    def short(lineage: dict[str, Any]) -> dict[str, Any]:
        out = {**lineage, "data": [{**d, "fingerprint": d["fingerprint"][:FINGERPRINT_CHARS]} for d in lineage["data"]]}
        if "parent_lineage" in out:
            out["parent_lineage"] = short(out["parent_lineage"])
        return out

    return _render_nested(short(data))


def _short(key: str, value: str) -> str:
    return value[:FINGERPRINT_CHARS] if key.endswith(".fingerprint") else value


def _number(value: Any) -> Any:
    """A metric to 4 significant digits (counts stay whole)."""
    if not is_number(value):
        return value
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.{_DIGITS}g}"


def _decimals(*values: Any) -> int:
    """Decimals that show the larger of `values` to 4 significant digits (a compared pair shares them)."""
    numbers = [abs(v) for v in values if is_number(v) and v != 0 and math.isfinite(v)]
    if not numbers:
        return 0
    return max(0, _DIGITS - 1 - math.floor(math.log10(max(numbers))))


def _fixed(value: Any, decimals: int, sign: bool = False) -> str | None:
    if not is_number(value):
        return None
    return f"{value:{'+' if sign else ''}.{decimals}f}"


def _clip(text: str | None, width: int) -> str | None:
    return text if text is None or len(text) <= width else text[: width - 3] + "..."


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f}s"


def _render_nested(data: dict[str, Any], indent: str = "") -> str:
    """`key: value` lines, nested mappings indented, lists of mappings one line each; absent values left out."""
    lines = []
    for key, value in data.items():
        if value is None or value in ([], {}, ""):
            continue
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", _render_nested(value, indent + "  ")]
        elif isinstance(value, list) and isinstance(value[0], dict):
            lines.append(f"{indent}{key}:")
            for item in value:
                lines.append(f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items() if v is not None))
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: {', '.join(map(str, value))}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)
