"""Evaluator throughput against a plain per-batch transformers loop, side by side in one process.

Two workloads over the same rows:

- MiniLM sequence classification (fresh seeded head) on generated reviews of varied length
  (1 to 8 demo reviews per row);
- perplexity of the tiny Llama on generated texts of varied length (all within its context, so both
  sides compute exactly the same quantity).

The peer is what one writes by hand: rows in their given order, `batch_size` at a time, padded to
the longest row of the batch, under `torch.no_grad()`. The Evaluator sorts rows by token length
(minimal padding) and runs under `torch.inference_mode()`. Both must agree on the result; the script
prints rows/s of each and the ratio.

    python benchmarks/bench_evaluate.py [--rows 3000] [--lm-rows 1000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _reviews(rows: int, seed: int) -> list[dict]:
    from modelops.data.demo_sentiment import sentiment

    pool = sentiment(n_train=rows, n_validation=0, n_test=0, seed=seed, messy_fraction=0.0)["train"]
    rng = random.Random(seed)
    texts, labels = list(pool["text"]), list(pool["label"])
    out = []
    for i in range(rows):
        extra = [texts[rng.randrange(len(texts))] for _ in range(rng.choice([0, 0, 0, 1, 2, 4, 7]))]
        out.append(
            {"text": " ".join([texts[i % len(texts)], *extra]).strip() or "empty", "label": labels[i % len(labels)]}
        )
    return out


def _lm_texts(rows: int, seed: int, max_bytes: int) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "a", "river", "city", "old", "new", "north", "south", "stone", "bridge", "green", "blue", "small"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, max_bytes // 6))) for _ in range(rows)]


def _plain_classify(model, tokenizer, texts: list[str], batch_size: int) -> list[int]:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=512,
                            return_tensors="pt")  # fmt: skip
            out += model(**enc).logits.argmax(-1).tolist()
    return out


def _plain_perplexity(model, tokenizer, texts: list[str], batch_size: int) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start : start + batch_size], padding=True, return_tensors="pt")
            logits = model(**enc).logits[:, :-1]
            targets = enc["input_ids"][:, 1:].masked_fill(enc["attention_mask"][:, 1:] == 0, -100)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((targets != -100).sum())
    return math.exp(total / count)


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def bench_classification(rows: int, batch_size: int) -> None:
    from modelops.data.dataset import Dataset
    from modelops.evaluate import Evaluator
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    records = _reviews(rows, seed=0)
    data = Dataset.from_records(records, split="test")
    model = load_model(ModelSpec("minilm"), labels=data.labels, seed=0).eval()
    tokenizer = load_tokenizer("minilm")
    texts = [r["text"] for r in records]
    evaluator = Evaluator(metrics=["accuracy"], batch_size=batch_size)
    plain, plain_s = _timed(lambda: _plain_classify(model, tokenizer, texts, batch_size))
    ours, ours_s = _timed(lambda: evaluator.evaluate((model, tokenizer), data))
    agree = sum(data.labels[p] == r["prediction"] for p, r in zip(plain, ours.predictions, strict=True)) / rows
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    print(f"MiniLM classification: {rows} rows, {min(lengths)}-{max(lengths)} tokens, batch {batch_size}")
    _report(rows, plain_s, ours_s, f"predictions agree on {agree:.2%} of rows")


def bench_perplexity(rows: int, batch_size: int) -> None:
    from modelops.data.dataset import Dataset
    from modelops.evaluate import Evaluator
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    model = load_model(ModelSpec("tiny-llama", task="causal_lm")).eval()
    tokenizer = load_tokenizer("tiny-llama")
    texts = _lm_texts(rows, seed=0, max_bytes=model.config.max_position_embeddings - 8)
    data = Dataset.from_records([{"text": t} for t in texts], split="test", format="text")
    evaluator = Evaluator(metrics=["perplexity"], batch_size=batch_size)
    plain, plain_s = _timed(lambda: _plain_perplexity(model, tokenizer, texts, batch_size))
    ours, ours_s = _timed(lambda: evaluator.evaluate((model, tokenizer), data))
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    print(f"tiny-llama perplexity: {rows} texts, {min(lengths)}-{max(lengths)} tokens, batch {batch_size}")
    _report(rows, plain_s, ours_s, f"perplexity plain {plain:.4f} vs Evaluator {ours.perplexity:.4f}")


def _report(rows: int, plain_s: float, ours_s: float, check: str) -> None:
    print(f"  plain loop : {rows / plain_s:9.1f} rows/s ({plain_s:.2f} s)")
    print(f"  Evaluator  : {rows / ours_s:9.1f} rows/s ({ours_s:.2f} s)")
    print(f"  ratio      : {plain_s / ours_s:9.2f}x   ({check})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="classification rows")
    parser.add_argument("--lm-rows", type=int, default=1000, help="perplexity texts")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_classification(args.rows, args.batch_size)
    bench_perplexity(args.lm_rows, args.batch_size)


if __name__ == "__main__":
    main()
