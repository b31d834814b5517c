"""Classification metrics: modelops (scikit-learn underneath) against a hand-written numpy version, side by side.

modelops computes accuracy, f1, precision, recall and the confusion matrix with scikit-learn (`labels=range(K)`,
`zero_division=0`). The peer is what one writes by hand in numpy: one confusion matrix from `np.bincount`, and
every score from its diagonal and sums (the implementation modelops had before). Both must agree; the script
prints the time per evaluation (all five metrics) of each and the ratio.

    python benchmarks/bench_metrics.py [--rows 1000 100000] [--labels 2 20] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

NAMES = ["accuracy", "f1", "precision", "recall", "confusion_matrix"]


def numpy_metrics(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> dict:
    """Macro scores from one bincount confusion matrix (zero_division=0)."""
    matrix = np.bincount(references * num_labels + predictions, minlength=num_labels**2).reshape(num_labels, -1)
    tp, predicted, support = np.diag(matrix), matrix.sum(axis=0), matrix.sum(axis=1)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros(len(a)), where=b != 0)

    return {
        "accuracy": float(tp.sum() / matrix.sum()),
        "f1": float(ratio(2 * tp, predicted + support).mean()),
        "precision": float(ratio(tp, predicted).mean()),
        "recall": float(ratio(tp, support).mean()),
        "confusion_matrix": matrix.tolist(),
    }


def _time(fn, repeats: int) -> tuple[float, dict]:
    result = fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats, result


def bench(rows: int, num_labels: int, repeats: int) -> None:
    from modelops.tasks.metrics import compute_classification

    rng = np.random.default_rng(0)
    references = rng.integers(0, num_labels, rows)
    predictions = np.where(rng.random(rows) < 0.8, references, rng.integers(0, num_labels, rows))
    ours_s, ours = _time(lambda: compute_classification(NAMES, predictions, references, num_labels), repeats)
    peer_s, peer = _time(lambda: numpy_metrics(predictions, references, num_labels), repeats)
    assert ours["confusion_matrix"] == peer["confusion_matrix"]
    assert all(abs(ours[name] - peer[name]) < 1e-12 for name in NAMES[:4]), (ours, peer)
    print(
        f"rows {rows:>7}  labels {num_labels:>3}  modelops (scikit-learn) {ours_s * 1e3:8.2f} ms  "
        f"numpy by hand {peer_s * 1e3:8.2f} ms  ratio {ours_s / peer_s:6.1f}x  (same values)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    for rows in args.rows:
        for num_labels in args.labels:
            bench(rows, num_labels, args.repeats)


if __name__ == "__main__":
    main()
