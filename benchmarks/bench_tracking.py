"""Tracking overhead: the lora_small recipe with `tracking=mlflow` against `tracking=none`, side by side.

Each configuration runs as the CLI does (`python -m modelops +recipe=lora_small ...`, a fresh process,
a fresh embedded store for the tracked run: table creation included), alternating, `--repeats` times.
Figures: wall time of each run (median), the difference as a share of the untracked run, and, as a
steadier figure on a shared machine, the tracker's own cost measured alone: `start_run` + `finish`
(mlflow import, params, the curve row by row through `sink`, inputs, evaluation, logged model,
artifacts, registration) replayed in a fresh process on a copy
of a finished run directory: once into a new store (its tables created: a store's first run) and
once more into that same store (every later run).

    python benchmarks/bench_tracking.py [--train 2000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_REPLAY = """
import sys, time
started = time.perf_counter()
from pathlib import Path
from omegaconf import OmegaConf
from modelops.registry.settings import TrackingConfig
from modelops.registry.tracker import start_run
run_dir = Path(sys.argv[1])
config = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=False)
tracker = start_run(TrackingConfig(uri=sys.argv[2]), run_dir, config, "lora_small")
import json
for line in (run_dir / "metrics.jsonl").read_text().splitlines():  # the curve, row by row, as training logs it
    tracker.sink(json.loads(line))
tracker.finish("succeeded", json.loads((run_dir / "eval.json").read_text()))
print(time.perf_counter() - started)
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(work: Path, tracking: str, index: int, train: int) -> float:
    run_dir = work / "outputs" / f"{tracking}-{index}"
    args = ["+recipe=lora_small", f"tracking={tracking}", f"dataset.n_train={train}", f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "modelops", *args], cwd=work, env=_env(), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def _replay(run_dir: Path, work: Path, name: str) -> float:
    copy = work / "replay" / name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("mlflow_run.json"))
    uri = f"sqlite:///{work / 'replay' / 'mlflow.db'}"
    out = subprocess.run([sys.executable, "-c", _REPLAY, str(copy), uri], env=_env(), check=True,
                         capture_output=True, text=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training rows (lora_small's own: 2000)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"none": [], "mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.repeats):
            for tracking in ("none", "mlflow"):
                (work / "outputs" / "mlflow.db").unlink(missing_ok=True)  # a new store each time
                seconds = _run(work, tracking, i, args.train)
                times[tracking].append(seconds)
                print(f"run {i + 1} tracking={tracking}: {seconds:.1f} s", flush=True)
        cold = _replay(work / "outputs" / "none-0", work, "first")
        warm = _replay(work / "outputs" / "none-0", work, "second")
    off, on = statistics.median(times["none"]), statistics.median(times["mlflow"])
    print(f"\nlora_small, {args.train} training rows, {args.repeats} run(s) each (medians)")
    print(f"{'tracking=none':<28}{off:8.1f} s")
    print(f"{'tracking=mlflow':<28}{on:8.1f} s")
    print(f"{'difference':<28}{on - off:8.1f} s   {100 * (on - off) / off:+.1f} % of the untracked run")
    print(f"{'tracker alone, new store':<28}{cold:8.1f} s   {100 * cold / off:.1f} % of the untracked run")
    print(f"{'tracker alone, its store':<28}{warm:8.1f} s   {100 * warm / off:.1f} % of the untracked run")


if __name__ == "__main__":
    main()
