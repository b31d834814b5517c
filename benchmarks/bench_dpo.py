"""DPO throughput and loss curve: modelops' loop against TRL's `DPOTrainer`, same model, pairs and batch size.

Both fully fine-tune the tiny Llama (seeded random weights) with DPO (sigmoid loss, beta 0.1) against a
frozen copy of the initial model, batch 8 pairs, one epoch, AdamW with linear decay and 10% warmup,
fp32, no gradient checkpointing, on preference pairs of widely varied length (the demo's prompts; each
answer followed by 0 to 40 words, most few, in one register for chosen and another for rejected). TRL
is configured as a careful user would: bf16 and gradient checkpointing off (its 1.16 defaults turn
both on, also on a CPU), no reporting, no saving, its reference log-probs computed each step like ours.

Figures: pairs per second of training (setup and tokenisation left out on both sides), the ratio, and the
loss curves (a moving mean over 10 steps; the pairs come in a different order on each side, so single
steps differ) with their largest gap.

    python benchmarks/bench_dpo.py [--pairs 512] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LR, BETA, SEED, MAX_LENGTH = 2e-4, 0.1, 0, 256
# The chosen answers go on in one register, the rejected ones in another: a preference both can learn.
CHOSEN_WORDS = ["thanks", "for", "asking", "this", "is", "the", "right", "answer", "as", "far", "as", "known"]
REJECTED_WORDS = ["whatever", "maybe", "who", "knows", "not", "sure", "guessing", "here", "honestly"]


def varied_pairs(n: int, seed: int) -> list[dict]:
    """Demo prompts with right/wrong answers, each followed by a random-length tail of filler words."""
    from modelops.data.demo_formats import preference_demo

    demo = preference_demo(n=n, seed=seed, validation=0, test=0)["train"]
    rng = random.Random(seed)

    def tail(words: list[str]) -> str:
        return " ".join(rng.choice(words) for _ in range(min(40, int(rng.expovariate(1 / 6.0)))))

    return [{"prompt": r["prompt"], "chosen": f"{r['chosen']} {tail(CHOSEN_WORDS)}".rstrip(),
             "rejected": f"{r['rejected']} {tail(REJECTED_WORDS)}".rstrip()} for r in demo]  # fmt: skip


def run_ours(rows: list[dict], batch: int, workdir: Path) -> dict:
    import json

    from modelops.data.dataset import Dataset
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    data = Dataset.from_records(rows, format="preference")
    config = TrainConfig(objective="dpo", beta=BETA, epochs=1, batch_size=batch, learning_rate=LR, weight_decay=0.0,
                         warmup_ratio=0.1, max_grad_norm=1.0, batching="group_by_length", seed=SEED, log_every=1,
                         resume=None, checkpoint_every=None, cache_dir=str(workdir / "cache"),
                         preview_examples=0)  # fmt: skip
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=MAX_LENGTH)
    steps: list[float] = []
    result = train(spec, data, config, workdir / "ours", metric_sinks=[lambda row: steps.append(time.perf_counter())])
    lines = (workdir / "ours" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    # From the end of the first step to the last: the same window as TRL's per-step timing below.
    seconds = steps[-1] - steps[0]
    return {"pairs_per_s": (len(rows) - batch) / seconds, "losses": losses, "steps": result.steps}


def run_trl(rows: list[dict], batch: int, workdir: Path) -> dict:
    import datasets
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    tokenizer = load_tokenizer("tiny-llama")
    model = load_model(ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=MAX_LENGTH), seed=SEED)
    args = DPOConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=LR,
        weight_decay=0.0, warmup_steps=int(0.1 * -(-len(rows) // batch)), lr_scheduler_type="linear",
        max_grad_norm=1.0, beta=BETA, seed=SEED,
        loss_type=["sigmoid"], max_length=MAX_LENGTH, bf16=False, fp16=False, gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to=[], logging_steps=1,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, processing_class=tokenizer,
                         train_dataset=datasets.Dataset.from_list(rows), callbacks=[Stamp()])  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # its per-step log lines; the losses are read from log_history
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"pairs_per_s": (len(rows) - batch) / (stamps[-1] - stamps[0]), "losses": losses, "steps": len(stamps)}


def moving_mean(values: list[float], window: int = 10) -> list[float]:
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    options = parser.parse_args()
    rows = varied_pairs(options.pairs, SEED)
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(rows, options.batch, Path(tmp))
        peer = run_trl(rows, options.batch, Path(tmp))
    print(f"DPO, tiny Llama (full fine-tuning), {len(rows)} pairs, batch {options.batch}, 1 epoch, fp32, CPU")
    print(f"  modelops        {ours['pairs_per_s']:8.1f} pairs/s   ({ours['steps']} steps)")
    print(f"  TRL DPOTrainer  {peer['pairs_per_s']:8.1f} pairs/s   ({peer['steps']} steps)")
    print(f"  ratio           {ours['pairs_per_s'] / peer['pairs_per_s']:8.2f}x")
    a, b = moving_mean(ours["losses"]), moving_mean(peer["losses"])
    n = min(len(a), len(b))
    marks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    print("  loss (moving mean of 10 steps)   step: " + " ".join(f"{i + 1:>6}" for i in marks))
    print("    modelops                             " + " ".join(f"{a[i]:6.3f}" for i in marks))
    print("    TRL                                  " + " ".join(f"{b[i]:6.3f}" for i in marks))
    print(f"  largest gap between the curves: {max(abs(a[i] - b[i]) for i in range(n)):.3f}")


if __name__ == "__main__":
    main()
