"""GRPO throughput and reward curve: modelops' loop against TRL's `GRPOTrainer` (no vLLM), side by side.

Both start from the same model: the tiny Llama (seeded random weights, byte tokenizer) after a short SFT
warm-up on sums ("Question: What is 3 + 4?\nAnswer:" -> " 3 + 4 = 7\n#### 7", made here with modelops' SFT,
2 epochs), so the rewards are neither all 0 nor all 1. Then GRPO on the prompt rows of the same sums, the same
on both sides: full fine-tuning, `--prompts-per-step` prompts per optimizer step, `--generations` completions
each, at most `--new-tokens` new tokens, temperature 1, top-p 1, beta 0.04 (a KL to the start model, a frozen
copy on both sides), loss `dapo`, rewards correctness (1 for the right number) + 0.2 x format (ends in `#### N`),
AdamW at a constant learning rate, fp32, one optimizer step per generation (the `grpo_tiny` recipe's settings).
TRL is configured as a careful user would: bf16 and gradient checkpointing off (its defaults turn both on, also on
a CPU), no reporting, no saving, generation with transformers (`use_vllm=False`), dropout disabled on both sides
(the tiny Llama has none).

Figures: prompts per second and generated tokens per second of training (from the end of the first step
to the end of the last; setup left out on both sides), the ratios, and the reward curves (a moving mean
of 10 steps; the prompts come in a different order on each side and completions are sampled, so single
steps differ) with their largest gap.

    python benchmarks/bench_grpo.py [--steps 120] [--prompts-per-step 8] [--generations 8] [--new-tokens 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LR, BETA, SEED, MAX_LENGTH, LARGEST, FORMAT = 5e-5, 0.04, 0, 64, 5, r"#### -?\d+$"


def warm_up(workdir: Path) -> Path:
    """The start model of both sides: SFT of the tiny Llama on worked " a + b = c\\n#### c" completions (two epochs)."""
    from modelops.data.arithmetic import arithmetic_demo
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    data = arithmetic_demo(n=800, seed=SEED, validation=0, test=0, style="completion", largest=LARGEST)
    config = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-3, warmup_ratio=0.05, seed=SEED, resume=None,
                         checkpoint_every=None, cache_dir=str(workdir / "cache"), preview_examples=0,
                         log_every=50)  # fmt: skip
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=MAX_LENGTH)
    return train(spec, data, config, workdir / "warmup").model_dir


def prompts(n: int) -> list[dict]:
    from modelops.data.arithmetic import arithmetic_demo

    table = arithmetic_demo(n=n, seed=SEED + 1, validation=0, test=0, style="prompt", largest=LARGEST)["train"]
    return [{"prompt": r["prompt"], "answer": r["answer"]} for r in table]


def reward_functions():
    """Named functions (TRL logs each by `__name__`), the same ones on both sides."""
    from modelops.tasks.rewards import correctness, format_match

    def correct(prompts, completions, **columns):
        return correctness(prompts, completions, column="answer", **columns)

    def form(prompts, completions, **columns):
        return format_match(prompts, completions, pattern=FORMAT, **columns)

    return [correct, form], [1.0, 0.2]


def run_ours(start: Path, rows: list[dict], options, workdir: Path) -> dict:
    from modelops.data.dataset import Dataset
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    functions, weights = reward_functions()
    data = Dataset.from_records(rows, format="prompt")
    config = TrainConfig(
        objective="grpo", max_steps=options.steps, batch_size=options.prompts_per_step,
        num_generations=options.generations, max_new_tokens=options.new_tokens, temperature=1.0, top_p=1.0,
        beta=BETA, loss_type="dapo", rewards=functions, reward_weights=weights, learning_rate=LR, weight_decay=0.0,
        scheduler="constant", warmup_ratio=0.0, max_grad_norm=1.0, batching="pad", seed=SEED, log_every=1,
        resume=None, checkpoint_every=None, preview_examples=0, mixed_precision="no",
    )  # fmt: skip
    spec = ModelSpec(name_or_path=str(start), task="causal_lm", max_length=MAX_LENGTH)
    stamps: list[float] = []
    train(spec, data, config, workdir / "ours", metric_sinks=[lambda row: stamps.append(time.perf_counter())])
    rows_out = [json.loads(line) for line in (workdir / "ours" / "metrics.jsonl").read_text().splitlines()]
    tokens = [r["completions/mean_length"] * options.prompts_per_step * options.generations for r in rows_out]
    seconds = stamps[-1] - stamps[0]
    return {"prompts_per_s": (len(stamps) - 1) * options.prompts_per_step / seconds,
            "tokens_per_s": sum(tokens[1:]) / seconds, "rewards": [r["reward"] for r in rows_out],
            "steps": len(rows_out)}  # fmt: skip


def run_trl(start: Path, rows: list[dict], options, workdir: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    functions, weights = reward_functions()
    tokenizer = AutoTokenizer.from_pretrained(start)
    tokenizer.padding_side = "left"
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=options.prompts_per_step * options.generations,
        gradient_accumulation_steps=1, num_generations=options.generations, max_completion_length=options.new_tokens,
        max_steps=options.steps, temperature=1.0, top_p=1.0, top_k=0, beta=BETA, loss_type="dapo",
        scale_rewards="group", num_iterations=1, reward_weights=weights, learning_rate=LR, weight_decay=0.0,
        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0, seed=SEED, bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(), use_vllm=False, save_strategy="no",
        report_to=[], logging_steps=1, dataloader_num_workers=0, disable_tqdm=True, disable_dropout=True,
    )  # fmt: skip
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    trainer = GRPOTrainer(model=model, reward_funcs=functions, args=args,
                          train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[Stamp()])  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    tokens = [e["completions/mean_length"] * options.prompts_per_step * options.generations for e in logged]
    seconds = stamps[-1] - stamps[0]
    return {"prompts_per_s": (len(stamps) - 1) * options.prompts_per_step / seconds,
            "tokens_per_s": sum(tokens[1:]) / seconds, "rewards": [e["reward"] for e in logged],
            "steps": len(stamps)}  # fmt: skip


def moving_mean(values: list[float], window: int = 10) -> list[float]:
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=20)
    options = parser.parse_args()
    rows = prompts(options.steps * options.prompts_per_step)
    with tempfile.TemporaryDirectory() as tmp:
        start = warm_up(Path(tmp))
        ours = run_ours(start, rows, options, Path(tmp))
        peer = run_trl(start, rows, options, Path(tmp))
    device = "GPU" if __import__("torch").cuda.is_available() else "CPU"
    print(f"GRPO, tiny Llama (full fine-tuning) after SFT warm-up, {options.steps} steps of "
          f"{options.prompts_per_step} prompts x {options.generations} completions, <= {options.new_tokens} new "
          f"tokens, fp32, {device}")  # fmt: skip
    for name, side in (("modelops", ours), ("TRL GRPOTrainer", peer)):
        print(f"  {name:<16} {side['prompts_per_s']:8.2f} prompts/s {side['tokens_per_s']:9.1f} generated tokens/s "
              f"({side['steps']} steps)")  # fmt: skip
    print(f"  ratio            {ours['prompts_per_s'] / peer['prompts_per_s']:8.2f}x           "
          f"{ours['tokens_per_s'] / peer['tokens_per_s']:9.2f}x")  # fmt: skip
    a, b = moving_mean(ours["rewards"]), moving_mean(peer["rewards"])
    n = min(len(a), len(b))
    marks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    print("  reward (moving mean of 10 steps)   step: " + " ".join(f"{i + 1:>6}" for i in marks))
    print("    modelops                               " + " ".join(f"{a[i]:6.3f}" for i in marks))
    print("    TRL                                    " + " ".join(f"{b[i]:6.3f}" for i in marks))
    print(f"  largest gap between the curves: {max(abs(a[i] - b[i]) for i in range(n)):.3f}")


if __name__ == "__main__":
    main()
