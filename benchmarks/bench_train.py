"""Training-step throughput: modelops' loop against a plain `transformers.Trainer` + PEFT, same model and data.

Both fine-tune the packaged MiniLM with the same LoRA (lora_small's settings), batch 32, one epoch,
AdamW with linear decay and 10% warmup, fp32, no gradient checkpointing, on demo sentiment reviews
joined into rows of widely varied length (1 to 12 reviews, most short: the shape of real text).
The peer is configured as a careful user would: its default random sampler, padding to the
longest row of each batch (DataCollatorWithPadding), no bf16 on a CPU, no reporting.

Figures: real (non-padding) tokens per second of training, the ratio, the share of padding in the
batches each one ran, and test accuracy of both models (the same Evaluator scores both).

    python benchmarks/bench_train.py [--train 1024] [--test 256] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH, LR, SEED = 32, 1e-3, 0


def varied_rows(n: int, seed: int) -> list[dict]:
    """Rows of 1..12 same-label reviews (geometric-like: mostly short, a long tail)."""
    from modelops.data.demo_sentiment import sentiment

    pool = sentiment(n_train=3000, n_validation=0, n_test=0, seed=seed, messy_fraction=0.0, duplicate_fraction=0.0)
    by_label: dict[str, list[str]] = {}
    for row in pool["train"]:
        by_label.setdefault(str(row["label"]), []).append(row["text"])
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(by_label))
        k = min(12, 1 + int(rng.expovariate(1 / 2.0)))
        rows.append({"text": " ".join(rng.sample(by_label[label], k)), "label": label})
    return rows


def dataset(n_train: int, n_test: int):
    from modelops.data.dataset import Dataset

    train, test = varied_rows(n_train, seed=1), varied_rows(n_test, seed=2)
    return Dataset.from_records(train, format="classification").replace(
        test=Dataset.from_records(test, format="classification")["train"]
    )


def spec():
    from peft import LoraConfig

    from modelops.models.spec import ModelSpec

    lora = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                      target_modules=["query", "key", "value", "dense"])  # fmt: skip
    return ModelSpec(name_or_path="minilm", task="seq_cls", max_length=128, peft=lora)


def run_ours(data, epochs: int, workdir: Path) -> dict:
    from modelops.evaluate import Evaluator
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    config = TrainConfig(epochs=epochs, batch_size=BATCH, learning_rate=LR, weight_decay=0.01, warmup_ratio=0.1,
                         batching="group_by_length", seed=SEED, log_every=1000, resume=None,
                         checkpoint_every=None, cache_dir=str(workdir / "cache"), preview_examples=0)  # fmt: skip
    started = time.perf_counter()
    result = train(spec(), data, config, workdir / "ours")
    wall = time.perf_counter() - started
    accuracy = Evaluator(metrics=["accuracy"]).evaluate(model=result.model_dir, dataset=data, split="test").accuracy
    return {"tokens_per_s": result.tokens_per_second, "wall_s": wall, "accuracy": accuracy,
            "padding": _padding_share(data, group=True)}  # fmt: skip


def run_peer(data, epochs: int, workdir: Path) -> dict:
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from modelops.evaluate import Evaluator
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.train.batching import tokenize_classification

    tokenizer = load_tokenizer("minilm")
    model = load_model(spec(), labels=data.labels, seed=SEED)
    tokenized = tokenize_classification(data["train"], tokenizer, data.label2id, 128)
    real_tokens = sum(tokenized["length"]) * epochs
    steps = -(-len(tokenized) // BATCH) * epochs
    args = TrainingArguments(
        output_dir=str(workdir / "peer"), per_device_train_batch_size=BATCH, num_train_epochs=epochs,
        learning_rate=LR, weight_decay=0.01, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear", seed=SEED,
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(),
        save_strategy="no", report_to=[], logging_steps=1000, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=tokenized.remove_columns(["length"]),
                      data_collator=DataCollatorWithPadding(tokenizer))  # fmt: skip
    started = time.perf_counter()
    metrics = trainer.train().metrics
    wall = time.perf_counter() - started
    evaluator = Evaluator(metrics=["accuracy"])
    accuracy = evaluator.evaluate(model=(model.eval(), tokenizer), dataset=data, split="test").accuracy
    return {"tokens_per_s": real_tokens / metrics["train_runtime"], "wall_s": wall, "accuracy": accuracy,
            "padding": _padding_share(data, group=False)}  # fmt: skip


def _padding_share(data, group: bool) -> float:
    """Share of padding tokens in the batches of one epoch (group-by-length batches, or random ones)."""
    from modelops.models.loading import load_tokenizer
    from modelops.train.batching import LengthGroupedBatches

    tokenizer = load_tokenizer("minilm")
    lengths = [len(ids) for ids in tokenizer(list(data["train"]["text"]), truncation=True, max_length=128)["input_ids"]]
    batches = LengthGroupedBatches(lengths, BATCH, SEED, group_by_length=group)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def main() -> None:
    import datasets
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1024)
    parser.add_argument("--test", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    data = dataset(args.train, args.test)
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}, "
          f"{args.train} train rows, {args.test} test rows, batch {BATCH}, {args.epochs} epoch(s)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(data, args.epochs, Path(tmp))
        peer = run_peer(data, args.epochs, Path(tmp))
    print(f"{'':28} {'real tokens/s':>14} {'padding':>8} {'wall s':>8} {'test acc':>9}")
    for name, r in (("modelops (group_by_length)", ours), ("transformers.Trainer + PEFT", peer)):
        print(f"{name:28} {r['tokens_per_s']:14.0f} {r['padding']:8.1%} {r['wall_s']:8.1f} {r['accuracy']:9.3f}")
    print(f"speed-up (real tokens/s): {ours['tokens_per_s'] / peer['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
