"""Sanitizer throughput and memory, side by side with plain peers in the same process.

    python benchmarks/bench_sanitize.py                    # 100,000 rows, num_proc=2
    python benchmarks/bench_sanitize.py --rows 1000000     # the memory figure (peak RSS)

Rows are short generated reviews with the mess real data has: duplicates, case/whitespace
variants, blank rows, invisible characters, e-mail addresses, near-duplicates (a word changed).

1. The `default` sanitizer (conf/sanitizer/default.yaml) over all rows: rows/s and peak RSS,
   measured first so that no peer's memory is counted.
2. normalise + drop empty + exact dedup: ours vs a straightforward pandas/Python version of
   the same rules; the kept rows must be the same.
3. near dedup: ours vs datasketch (MinHash + MinHashLSH, same shingles, num_perm, threshold) on
   `--peer-rows` rows (datasketch hashes one row at a time).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
_WORDS = [
    "the", "a", "this", "my", "our", "phone", "laptop", "movie", "album", "hotel", "room", "camera", "kettle",
    "jacket", "game", "watch", "bike", "lamp", "is", "was", "felt", "seemed", "great", "awful", "fine", "good",
    "poor", "reliable", "noisy", "lovely", "broken", "cheap", "sturdy", "and", "but", "really", "very",
    "quite", "not", "so", "after", "week", "day", "month", "year", "would", "buy", "again", "return", "avoid",
    "recommend", "love", "hate",
]  # fmt: skip


def make_texts(n: int, seed: int = 0) -> list[str]:
    """`n` short texts (6-18 words) with duplicates, variants, blanks, PII and near-duplicates."""
    rng = np.random.default_rng(seed)
    vocab = np.array(_WORDS)
    lengths = rng.integers(6, 19, n)
    words = vocab[rng.integers(0, len(vocab), int(lengths.sum()))]
    cuts = np.cumsum(lengths)[:-1]
    texts = [" ".join(w) for w in np.split(words, cuts)]
    kind = rng.random(n)
    source = rng.integers(0, max(n, 1), n)
    for i in np.flatnonzero(kind < 0.10):  # exact copy of an earlier row
        texts[i] = texts[min(source[i], i)]
    for i in np.flatnonzero((kind >= 0.10) & (kind < 0.14)):  # case / whitespace variant
        texts[i] = "  " + texts[min(source[i], i)].upper().replace(" ", "   ", 2) + "\t"
    for i in np.flatnonzero((kind >= 0.14) & (kind < 0.16)):  # blank
        texts[i] = " \u200b "
    for i in np.flatnonzero((kind >= 0.16) & (kind < 0.18)):  # invisible characters, non-breaking spaces
        texts[i] = texts[i].replace(" ", "\u00a0", 1) + "\u200b"
    for i in np.flatnonzero((kind >= 0.18) & (kind < 0.19)):  # PII
        texts[i] = f"{texts[i]} mail me at user{i}@example.com"
    for i in np.flatnonzero((kind >= 0.19) & (kind < 0.22)):  # near duplicate: last word changed
        texts[i] = texts[min(source[i], i)].rsplit(" ", 1)[0] + " zebra"
    return texts


class PeakRss:
    """Samples memory every 50 ms, keeping the peaks in MB: `main` is this process's RSS, `total` the
    proportional set size (PSS) of this process and its workers: pages a forked worker shares with
    its parent count once, not once per process as summed RSS would count them."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.main = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        main = self._proc.memory_full_info()
        total = main.pss
        for child in self._proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                total += child.memory_full_info().pss
        self.main = max(self.main, main.rss / 2**20)
        self.total = max(self.total, total / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# ----------------------------------------------------------------------------- peers

_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def pandas_clean(texts: list[str], labels: list[str]):
    """The peer: the same normalise + drop-empty + exact-dedup rules, written plainly with pandas."""
    import pandas as pd

    df = pd.DataFrame({"text": texts, "label": labels})

    def normalise(text: str) -> str:
        text = unicodedata.normalize("NFKC", text)
        text = _INVISIBLE.sub("", text)
        return _NEWLINES.sub("\n", _SPACES.sub(" ", text)).strip()

    df["text"] = df["text"].map(normalise)
    df = df[df["text"].str.strip() != ""]
    key = df["text"].str.lower().str.split().str.join(" ") + "\x00" + df["label"]
    return df[~key.duplicated()]


def datasketch_clusters(texts: list[str], ngram: int, num_perm: int, threshold: float) -> int:
    """The near-dedup peer: datasketch MinHash + MinHashLSH, first row of each bucket kept; returns rows dropped."""
    from datasketch import MinHash, MinHashLSH

    from modelops.sanitize.near_dedup import word_tokens

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dropped = 0
    for i, text in enumerate(texts):
        words = word_tokens(text)
        grams = {b" ".join(words[j : j + ngram]) for j in range(max(len(words) - ngram + 1, 1))} if words else set()
        m = MinHash(num_perm=num_perm)
        m.update_batch(list(grams))
        if lsh.query(m):
            dropped += 1
        else:
            lsh.insert(str(i), m)
    return dropped


# ----------------------------------------------------------------------------- ours


def dataset_of(n: int, chunk: int = 100_000):
    """A classification `Dataset` of `n` generated rows, built chunk by chunk so no big list lives long."""
    import datasets
    import pyarrow as pa

    from modelops.data.dataset import Dataset

    parts = []
    for start in range(0, n, chunk):
        texts = make_texts(min(chunk, n - start), seed=start)
        labels = pa.array(np.where(np.arange(start, start + len(texts)) % 2 == 0, "pos", "neg"))
        parts.append(pa.table({"text": pa.array(texts, type=pa.string()), "label": labels}))
    return Dataset({"train": datasets.Dataset(pa.concat_tables(parts))}, format="classification")


def default_steps() -> list:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(_ROOT / "conf" / "sanitizer" / "default.yaml"))["steps"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--peer-rows", type=int, default=20_000, help="rows for the datasketch comparison")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()

    import gc

    import datasets

    from modelops.sanitize import DatasetSanitizer

    datasets.disable_progress_bars()
    dataset = dataset_of(args.rows)
    gc.collect()
    sanitizer = DatasetSanitizer(steps=default_steps(), num_proc=args.num_proc, batch_size=1000)
    with PeakRss() as rss:
        before = rss.main
        clean, seconds = timed(lambda: sanitizer.sanitize(dataset))
    print(f"default sanitizer, {args.rows:,} rows, num_proc={args.num_proc}: {seconds:.2f} s, "
          f"{args.rows / seconds:,.0f} rows/s, {len(clean['train']):,} rows kept")  # fmt: skip
    print(f"RSS: {before:,.0f} MB with the data loaded; peak while sanitising {rss.main:,.0f} MB (main process), "
          f"{rss.total:,.0f} MB PSS (main + workers)")  # fmt: skip
    print(sanitizer.report.table())
    if args.skip_peers:
        return
    texts = list(dataset["train"]["text"])
    labels = list(dataset["train"]["label"])
    compare_basic(dataset, texts, labels, args.num_proc)
    compare_near_dedup(texts[: args.peer_rows], args.num_proc)


def compare_basic(dataset, texts: list[str], labels: list[str], num_proc: int) -> None:
    from modelops.sanitize import DatasetSanitizer

    n = len(texts)
    basic = [step for step in default_steps() if step["name"] in ("normalize", "drop_empty", "exact_dedup")]
    ours = DatasetSanitizer(steps=basic, num_proc=num_proc)
    clean, ours_s = timed(lambda: ours.sanitize(dataset))
    peer, peer_s = timed(lambda: pandas_clean(texts, labels))
    same = list(clean["train"]["text"]) == peer["text"].tolist()
    print(f"\nnormalise + drop empty + exact dedup on {n:,} rows (kept: ours {len(clean['train']):,}, "
          f"pandas {len(peer):,}, same rows: {same})")  # fmt: skip
    print(f"  ours (num_proc={num_proc}): {ours_s:6.2f} s  {n / ours_s:>10,.0f} rows/s")
    print(f"  pandas/Python:      {peer_s:6.2f} s  {n / peer_s:>10,.0f} rows/s")
    print(f"  ratio ours/peer: {peer_s / ours_s:.2f}x")


def compare_near_dedup(texts: list[str], num_proc: int) -> None:
    import datasets

    from modelops.sanitize.near_dedup import NearDedup
    from modelops.sanitize.step import REASON, StepContext

    n = len(texts)
    cfg = next(step for step in default_steps() if step["name"] == "near_dedup")
    params = {k: v for k, v in cfg.items() if k != "name"}
    table = datasets.Dataset.from_dict({"text": texts})
    ctx = StepContext(format="text", num_proc=num_proc, batch_size=1000)
    marked, ours_s = timed(lambda: NearDedup(**params)(table, ctx))
    ours_dropped = sum(1 for r in marked[REASON] if r)
    ngram, num_perm, threshold = params["ngram"], params["num_perm"], params["threshold"]
    peer_dropped, peer_s = timed(lambda: datasketch_clusters(texts, ngram, num_perm, threshold))
    print(f"\nnear dedup on {n:,} rows (ngram={params['ngram']}, num_perm={params['num_perm']}, "
          f"threshold={params['threshold']}); dropped: ours {ours_dropped:,}, datasketch {peer_dropped:,}")  # fmt: skip
    print(f"  ours (num_proc={num_proc}): {ours_s:6.2f} s  {n / ours_s:>10,.0f} rows/s")
    print(f"  datasketch:         {peer_s:6.2f} s  {n / peer_s:>10,.0f} rows/s")
    print(f"  ratio ours/peer: {peer_s / ours_s:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
