"""Training throughput and accuracy: modelops' loop (pad and group_by_length) against `transformers.Trainer` + PEFT.

All three fine-tune the packaged MiniLM with the same LoRA (r 8 on query and value by default;
`--targets query key value dense --lr 1e-3` is lora_small's), batch 32, one epoch, AdamW at lr 5e-4
with linear decay and 10% warmup, fp32, no gradient checkpointing. The peer is
configured as a careful user would: its default random sampler, padding to the longest row of each
batch (DataCollatorWithPadding), no bf16 on a CPU, no reporting.

Data (no SST-2 here, no network): `--data sst2` (default) generates SST-2-shaped data: the train
split mixes full movie-review sentences (~15%) with phrases cut out of them (1 to ~12 words, most
short), labelled like the treebank's phrases (a phrase without an opinion word gets a noisy label),
plus 5% flipped labels; the test split is full sentences only, as SST-2's dev set is.
`--data varied` joins 1 to 12 demo reviews per row (the earlier benchmark's data).

Each run is a fresh process (the same data, regenerated), one after another, so no run inherits
another's memory or threads. Figures: per seed, test accuracy of each; real (non-padding) tokens per
second of training, the share of padding in the batches it trained on (the peer's counted in its
collator), and all tokens (padding included) per second, which shows the per-token speed of the
loops is alike; then the mean accuracy of each over the seeds and the speed ratios (grouped / pad,
grouped / peer, pad / peer).

    python benchmarks/bench_train.py [--train 4000] [--test 872] [--seeds 0 1 2] [--data sst2|varied]
        [--lr 5e-4] [--targets query value] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH = 32

_POSITIVE = ["gorgeous", "moving", "funny", "sharp", "warm", "smart", "touching", "brilliant", "charming", "vivid",
             "gripping", "tender", "witty", "assured", "lovely"]  # fmt: skip
_NEGATIVE = ["dull", "tedious", "flat", "clumsy", "lifeless", "bland", "shallow", "muddled", "tiresome", "hollow",
             "cheap", "lazy", "stale", "awkward", "pointless"]  # fmt: skip
_SUBJECTS = ["the film", "the movie", "this picture", "the script", "the cast", "the director's latest",
             "its second half", "the story", "the dialogue", "the final act", "the lead performance"]  # fmt: skip
_FILLERS = ["as it wanders through the lives of three sisters in a small town", "with a soundtrack that never stops",
            "for most of its two hours", "despite a strong opening", "in the way only a first feature can be",
            "from the first frame to the credits", "and everyone in the audience knows it",
            "even when the plot turns predictable", "with more heart than budget",
            "if you can sit through it"]  # fmt: skip


def _clause(rng: random.Random) -> tuple[str, int]:
    positive = rng.random() < 0.5
    negated = rng.random() < 0.2
    word = rng.choice(_NEGATIVE if positive == negated else _POSITIVE)
    opinion = f"not {word}" if negated else rng.choice(["", "very ", "often ", "quite "]) + word
    return f"{rng.choice(_SUBJECTS)} is {opinion}", int(positive)


def _sentence(rng: random.Random) -> tuple[str, int]:
    """A review sentence: one to three opinion clauses and filler, labelled by their majority (ties: the last)."""
    clauses = [_clause(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    parts = []
    for text, _ in clauses:
        parts.append(text)
        if rng.random() < 0.7:
            parts.append(rng.choice(_FILLERS))
    votes = sum(label for _, label in clauses)
    label = clauses[-1][1] if 2 * votes == len(clauses) else int(2 * votes > len(clauses))
    return " , ".join(parts) + " .", label


def _phrase(rng: random.Random, sentence: str, label: int) -> tuple[str, int]:
    """A contiguous span of the sentence, mostly short; one without an opinion word keeps the sentence's label 60%."""
    words = sentence.split()
    n = min(len(words), 1 + int(rng.expovariate(1 / 3.0)))
    start = rng.randrange(len(words) - n + 1)
    span = words[start : start + n]
    opinions = [w for w in span if w in _POSITIVE or w in _NEGATIVE]
    if opinions:
        i = span.index(opinions[-1])
        positive = (opinions[-1] in _POSITIVE) != (i > 0 and span[i - 1] == "not")
        return " ".join(span), int(positive)
    return " ".join(span), label if rng.random() < 0.6 else 1 - label


def sst2_rows(n: int, seed: int, sentences_only: bool = False) -> list[dict]:
    """SST-2-shaped rows: full sentences (~15%, or all) and phrases of them, with 5% of labels flipped."""
    rng = random.Random(f"sst2-{seed}")
    rows = []
    while len(rows) < n:
        sentence, label = _sentence(rng)
        if sentences_only or rng.random() < 0.15:
            text, y = sentence, label
        else:
            text, y = _phrase(rng, sentence, label)
        if not sentences_only and rng.random() < 0.05:
            y = 1 - y
        rows.append({"text": text, "label": ["negative", "positive"][y]})
    return rows


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


def dataset(n_train: int, n_test: int, kind: str):
    from modelops.data.dataset import Dataset

    if kind == "sst2":
        train, test = sst2_rows(n_train, seed=1), sst2_rows(n_test, seed=2, sentences_only=True)
    else:
        train, test = varied_rows(n_train, seed=1), varied_rows(n_test, seed=2)
    return Dataset.from_records(train, format="classification").replace(
        test=Dataset.from_records(test, format="classification")["train"]
    )


def spec(targets: list[str]):
    from peft import LoraConfig

    from modelops.models.spec import ModelSpec

    lora = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=targets)
    return ModelSpec(name_or_path="minilm", task="seq_cls", max_length=128, peft=lora)


def run_ours(data, batching: str, seed: int, workdir: Path, lr: float, targets: list[str]) -> dict:
    from modelops.evaluate import Evaluator
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    config = TrainConfig(epochs=1, batch_size=BATCH, learning_rate=lr, weight_decay=0.01, warmup_ratio=0.1,
                         batching=batching, seed=seed, log_every=1000, resume=None, checkpoint_every=None,
                         cache_dir=str(workdir / "cache"), preview_examples=0)  # fmt: skip
    started = time.perf_counter()
    result = train(spec(targets), data, config, workdir / f"ours-{batching}-{seed}")
    wall = time.perf_counter() - started
    accuracy = Evaluator(metrics=["accuracy"]).evaluate(model=result.model_dir, dataset=data, split="test").accuracy
    return {"tokens_per_s": result.tokens_per_second, "wall_s": wall, "accuracy": accuracy,
            "padding": _padding_share(data, batching == "group_by_length", seed)}  # fmt: skip


def run_peer(data, seed: int, workdir: Path, lr: float, targets: list[str]) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from modelops.evaluate import Evaluator
    from modelops.models.loading import load_model, load_tokenizer
    from modelops.tasks.batching import model_columns
    from modelops.tasks.classification import tokenize_classification

    tokenizer = load_tokenizer("minilm")
    model = load_model(spec(targets), labels=data.labels, seed=seed)
    tokenized = tokenize_classification(data["train"], tokenizer, data.label2id, 128)
    tokenized = tokenized.select_columns(model_columns(tokenized))
    real_tokens = sum(tokenized["length"])
    steps = -(-len(tokenized) // BATCH)
    args = TrainingArguments(
        output_dir=str(workdir / f"peer-{seed}"), per_device_train_batch_size=BATCH, num_train_epochs=1,
        learning_rate=lr, weight_decay=0.01, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear", seed=seed,
        bf16=False, fp16=False, activation_checkpointing=False, use_cpu=not torch.cuda.is_available(),
        save_strategy="no", report_to=[], logging_steps=1000, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    collator = _CountingPadding(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=tokenized.remove_columns(["length"]),
                      data_collator=collator)  # fmt: skip
    started = time.perf_counter()
    metrics = trainer.train().metrics
    wall = time.perf_counter() - started
    evaluator = Evaluator(metrics=["accuracy"])
    accuracy = evaluator.evaluate(model=(model.eval(), tokenizer), dataset=data, split="test").accuracy
    return {"tokens_per_s": real_tokens / metrics["train_runtime"], "wall_s": wall, "accuracy": accuracy,
            "padding": 1 - real_tokens / collator.padded}  # fmt: skip


class _CountingPadding:
    """DataCollatorWithPadding, counting the tokens (padding included) of the batches it makes."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.collate, self.padded = DataCollatorWithPadding(tokenizer), 0

    def __call__(self, features):
        batch = self.collate(features)
        self.padded += batch["input_ids"].numel()
        return batch


def _padding_share(data, group: bool, seed: int) -> float:
    """Share of padding tokens in the batches of one epoch (group-by-length batches, or random ones)."""
    from modelops.models.loading import load_tokenizer
    from modelops.train.batching import LengthGroupedBatches

    tokenizer = load_tokenizer("minilm")
    lengths = [len(ids) for ids in tokenizer(list(data["train"]["text"]), truncation=True, max_length=128)["input_ids"]]
    batches = LengthGroupedBatches(lengths, BATCH, seed, group_by_length=group)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


RUNS = ("modelops pad", "modelops group_by_length", "transformers.Trainer + PEFT")


def _run(name: str, seed: int, n_train: int, n_test: int, kind: str, lr: float, targets: list[str]) -> dict:
    """One run, in a process of its own (see main)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    data = dataset(n_train, n_test, kind)
    with tempfile.TemporaryDirectory() as tmp:
        if name == RUNS[2]:
            return run_peer(data, seed, Path(tmp), lr, targets)
        return run_ours(data, "pad" if name == RUNS[0] else "group_by_length", seed, Path(tmp), lr, targets)


def _in_own_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_run, *args).result()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=872)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", choices=["sst2", "varied"], default="sst2")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--targets", nargs="+", default=["query", "value"], help="LoRA target modules")
    parser.add_argument("--json", help="also write every run's figures to this file")
    args = parser.parse_args()
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}, torch threads {torch.get_num_threads()}, "
          f"data {args.data}: {args.train} train rows, {args.test} test rows, batch {BATCH}, 1 epoch, "
          f"seeds {args.seeds}, LoRA r 8 on {args.targets}, lr {args.lr}")  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name in RUNS}
    print(f"{'':30} {'seed':>4} {'real tokens/s':>14} {'padding':>8} {'all tokens/s':>13} {'wall s':>8} "
          f"{'test acc':>9}", flush=True)  # fmt: skip
    for seed in args.seeds:
        for name in RUNS:
            r = _in_own_process(name, seed, args.train, args.test, args.data, args.lr, args.targets)
            results[name].append(r)
            print(f"{name:30} {seed:>4} {r['tokens_per_s']:14.0f} {r['padding']:8.1%} "
                  f"{r['tokens_per_s'] / (1 - r['padding']):13.0f} {r['wall_s']:8.1f} {r['accuracy']:9.3f}",
                  flush=True)  # fmt: skip
    print()
    accuracy = {name: [r["accuracy"] for r in results[name]] for name in RUNS}
    for name, accs in accuracy.items():
        spread = f" ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else ""
        listed = ", ".join(f"{a:.3f}" for a in accs)
        print(f"{name:30} mean test accuracy {statistics.mean(accs):.3f}{spread}  ({listed})")
    pad, grouped, peer = (statistics.mean(r["tokens_per_s"] for r in results[name]) for name in RUNS)
    print(f"real tokens/s ratios: group_by_length / peer {grouped / peer:.2f}x, pad / peer {pad / peer:.2f}x, "
          f"group_by_length / pad {grouped / pad:.2f}x")  # fmt: skip
    gap = statistics.mean(accuracy[RUNS[1]]) - statistics.mean(accuracy[RUNS[0]])
    print(f"accuracy, group_by_length - pad: {100 * gap:+.1f} points")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
