"""Peak memory and time to load, split, fingerprint and save a 1,000,000-row (~200 MB) JSONL file.

    PYTHONPATH=. python benchmarks/bench_dataset_memory.py [--rows 1000000] [--skip-peers]

(or without PYTHONPATH once the package is installed with ``pip install -e .``)

Each contender runs in its own forked child (peak RSS, ``ru_maxrss``, is a per-process
high-water mark), on the same generated file:

- ``modelops``: `Dataset.from_jsonl` -> `split` -> `fingerprint` -> `save` (.jsonl and .parquet);
- ``hf``: ``datasets.load_dataset("json")`` (Arrow cache on disk) -> ``train_test_split`` ->
  ``to_json``, the usual way with plain `datasets`;
- ``naive``: ``json.loads`` of every line into a Python list -> ``datasets.Dataset.from_list``,
  the per-row-object way this loader replaced.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

_WORDS = [
    "the",
    "a",
    "product",
    "works",
    "great",
    "terrible",
    "fine",
    "broke",
    "after",
    "days",
    "love",
    "hate",
    "would",
    "buy",
    "again",
    "never",
]


def make_file(path: Path, rows: int, seed: int = 0) -> None:
    """Classification rows of ~200 bytes each: a review-like text and a label."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            text = " ".join(rng.choice(_WORDS) for _ in range(28))
            fh.write(json.dumps({"id": i, "text": f"{text} ✓", "label": rng.choice(["positive", "negative"])}) + "\n")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_modelops(path: Path, out: Path) -> dict:
    from modelops.data.dataset import Dataset

    times = {}
    start = time.perf_counter()
    dataset = Dataset.from_jsonl(path)
    times["load"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset = dataset.split(validation=0.1, test=0.1, seed=0)
    times["split"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset.fingerprint("train")
    times["fingerprint"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset.save(out / "train.jsonl", split="train")
    times["save_jsonl"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset.save(out / "train.parquet", split="train")
    times["save_parquet"] = time.perf_counter() - start
    return times


def run_hf(path: Path, out: Path) -> dict:
    import datasets

    datasets.disable_progress_bars()
    times = {}
    start = time.perf_counter()
    data = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(out / "cache"))
    times["load"] = time.perf_counter() - start
    start = time.perf_counter()
    parts = data.train_test_split(test_size=0.2, seed=0)
    times["split"] = time.perf_counter() - start
    start = time.perf_counter()
    parts["train"].to_json(str(out / "hf_train.jsonl"), lines=True, force_ascii=False)
    times["save_jsonl"] = time.perf_counter() - start
    return times


def run_naive(path: Path, out: Path) -> dict:
    import datasets

    start = time.perf_counter()
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    data = datasets.Dataset.from_list(rows)
    return {"load": time.perf_counter() - start, "rows": len(data)}


def _child(name: str, path: str, out: str, queue) -> None:
    times = {"modelops": run_modelops, "hf": run_hf, "naive": run_naive}[name](Path(path), Path(out))
    queue.put({"times": times, "peak_rss_mb": _peak_mb()})


def measure(name: str, path: Path, out: Path) -> dict:
    """Run one contender in a fresh forked process; its peak RSS is its own."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(path), str(out), queue))
    proc.start()
    while proc.is_alive() or not queue.empty():
        try:
            return queue.get(timeout=1)
        except Exception:  # queue.Empty: still running
            continue
    raise SystemExit(f"{name}: the benchmark process failed (exit code {proc.exitcode})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-peers", action="store_true", help="measure modelops only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "big.jsonl"
        start = time.perf_counter()
        make_file(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(f"file: {args.rows:,} rows, {size_mb:.0f} MB, generated in {time.perf_counter() - start:.1f}s")
        print(f"baseline RSS of this (parent) process: {_peak_mb():.0f} MB")
        names = ["modelops"] if args.skip_peers else ["modelops", "hf", "naive"]
        results = {name: measure(name, path, tmp) for name in names}
        for name, result in results.items():
            times = ", ".join(f"{k} {v:.1f}s" for k, v in result["times"].items() if k != "rows")
            print(f"{name:9s} peak RSS {result['peak_rss_mb']:7.0f} MB   {times}")
        ours = results["modelops"]["peak_rss_mb"]
        for name in names[1:]:
            print(f"peak RSS ratio {name}/modelops: {results[name]['peak_rss_mb'] / ours:.2f}x")
        ok = ours < 2048
        print(f"modelops peak RSS {'under' if ok else 'OVER'} the 2 GB budget")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
