"""`python -m modelops.registry` (also `modelops-registry`, and `modelops runs|models|...`): runs and models.

    runs [--experiment E] [--limit N]    recent runs: id, name, status, key metrics, duration
    models                               registered models: versions, aliases
    show NAME[/V|@ALIAS]                 one version: run, base model, data, metrics, aliases
    compare A B                          two runs (run ids or model references): config and metric deltas
    promote NAME VERSION ALIAS           point ALIAS (champion, staging, ...) at a version
    lineage NAME[/V|@ALIAS]              data fingerprints, base model (and its own lineage), parent run

Tables for people (values rounded, what differs first, absent values left out); `--json` for scripts
(every value as stored). The store is `--tracking-uri`, else `$MLFLOW_TRACKING_URI`,
else `sqlite:///outputs/mlflow.db`.
"""

from __future__ import annotations

import argparse
import json
import sys

from modelops.errors import ModelopsError
from modelops.registry import views

COMMANDS = ("runs", "models", "show", "compare", "promote", "lineage")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        data = getattr(views, args.command)(args)
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2, default=str) if args.json else views.render(args.command, data))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelops-registry", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                        "else sqlite:///outputs/mlflow.db)")  # fmt: skip
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", parents=[common], help="recent runs")
    runs.add_argument("--experiment", default=None, help="only this experiment")
    runs.add_argument("--limit", type=int, default=20)
    sub.add_parser("models", parents=[common], help="registered models, versions, aliases")
    for name, what in (("show", "one registered version"), ("lineage", "where a registered version came from")):
        sub.add_parser(name, parents=[common], help=what).add_argument("model", help="NAME, NAME/3 or NAME@alias")
    compare = sub.add_parser("compare", parents=[common], help="two runs side by side")
    compare.add_argument("a", help="a run id or a model reference (NAME/3, NAME@alias)")
    compare.add_argument("b")
    promote = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("alias")
    return parser


if __name__ == "__main__":
    sys.exit(main())
