"""GPU fine-tuning throughput: modelops' loop against TRL's `SFTTrainer`, both at their best settings.

Nothing is downloaded. Each model is built from a transformers config with seeded random weights, in
the shape of Qwen2.5-0.5B (Qwen2, 24 layers, hidden 896, GQA 14/2, vocab 151936, tied) and of
Llama-3.2-1B (16 layers, hidden 2048, GQA 32/8, vocab 128256, tied), with a byte-level tokenizer. On a
machine without CUDA (or with `--tiny`) both shapes shrink to a few layers of width 64, so the script
runs on a CPU in seconds (CI runs it that way); the figures are then only a smoke test.

The data are prompt/completion rows with a realistic length spread (log-normal, median ~1/8 of
`--max-length`, long tail cut at `--max-length`). Both sides fully fine-tune the same fp32 weights with
the same batch (packed rows of `--max-length` tokens), steps, AdamW (fused on CUDA), linear decay,
clipping at 1.0, loss on the completions only:

- modelops: `trainer.batching=packing` (padding-free layout chosen by the model probe),
  `mixed_precision=auto`, Liger where installed (`trainer.liger`).
- TRL: `packing=True` (BFD, padding-free), bf16 on a GPU that has it (fp32 on a CPU: TRL's default bf16
  is slow there), Liger where installed.
- Both: flash_attention_2 when flash-attn and CUDA are there, else sdpa; gradient checkpointing only
  with `--gradient-checkpointing` (the same on both sides).

Each side runs in its own process, so peak memory is its own: `torch.cuda.max_memory_allocated` on a
GPU, peak RSS of the process on a CPU. Tokens/s counts non-padding input tokens of the training loop.
The losses are the first `--steps` (at most 50) logged training losses: start, mean, end.

    python benchmarks/bench_gpu.py [--tiny] [--steps 50] [--batch 4] [--max-length 2048]
        [--shapes qwen2.5-0.5b llama-3.2-1b] [--gradient-checkpointing]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LR, SEED = 1e-4, 0

#: Architecture and transformers config of each shape, full size and tiny.
SHAPES = {
    "qwen2.5-0.5b": ("Qwen2Config", {
        "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
        "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    }),
    "llama-3.2-1b": ("LlamaConfig", {
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "max_position_embeddings": 131072,
        "rope_theta": 5e5, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    }),
}  # fmt: skip
TINY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "head_dim": 16,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}  # fmt: skip


def build_model(shape: str, tiny: bool, directory: Path) -> Path:
    """Write a random-weight model of `shape` and the byte tokenizer to `directory`."""
    import torch
    import transformers

    from modelops.models.tiny import byte_tokenizer

    kind, options = SHAPES[shape]
    config = getattr(transformers, kind)(**{**options, **(TINY if tiny else {})})
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(directory)
    byte_tokenizer().save_pretrained(directory)
    return directory


def sft_rows(n: int, max_length: int, seed: int) -> list[dict]:
    """Prompt/completion rows of words; total lengths log-normal (median max_length/8), prompts ~30 %."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    rows = []
    for _ in range(n):
        chars = min(max_length - 8, max(16, int(rng.lognormvariate(math.log(max_length / 8), 0.8))))
        text = ""
        while len(text) < chars:
            text += rng.choice(words) + " "
        cut = max(4, int(chars * rng.uniform(0.15, 0.45)))
        rows.append({"prompt": text[:cut], "completion": text[cut:chars]})
    return rows


def _settings(gradient_checkpointing: bool) -> dict:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    return {
        "attn": "flash_attention_2" if flash else "sdpa",
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "liger": cuda and importlib.util.find_spec("liger_kernel") is not None,
        "gradient_checkpointing": gradient_checkpointing,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }


def run_ours(model_dir: Path, rows: list[dict], args, settings: dict, workdir: Path) -> dict:
    from modelops.data.dataset import Dataset
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    spec = ModelSpec(name_or_path=str(model_dir), task="causal_lm", max_length=args.max_length,
                     attn_implementation=settings["attn"],
                     gradient_checkpointing=settings["gradient_checkpointing"])  # fmt: skip
    config = TrainConfig(max_steps=args.steps, batch_size=args.batch, learning_rate=LR, weight_decay=0.0,
                         warmup_ratio=0.0, max_grad_norm=1.0, batching="packing", mixed_precision="auto",
                         liger=settings["liger"], seed=SEED, log_every=1, resume=None, checkpoint_every=None,
                         cache_dir=str(workdir / "cache"), preview_examples=0, loss_on="answer")  # fmt: skip
    result = train(spec, Dataset.from_records(rows, format="completion"), config, workdir / "ours")
    lines = (workdir / "ours" / "metrics.jsonl").read_text().splitlines()
    losses = [row["loss"] for row in map(json.loads, lines) if "loss" in row and "step" in row]
    return {"tokens_per_s": result.tokens_per_second, "losses": losses}


def run_trl(model_dir: Path, rows: list[dict], args, settings: dict, workdir: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=settings["attn"])
    config = SFTConfig(
        output_dir=str(workdir / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=LR, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0,
        bf16=settings["bf16"], fp16=False, gradient_checkpointing=settings["gradient_checkpointing"],
        packing=True, max_length=args.max_length, completion_only_loss=True, use_liger_kernel=settings["liger"],
        optim="adamw_torch_fused" if cuda else "adamw_torch", use_cpu=not cuda, seed=SEED, logging_steps=1,
        save_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer)  # fmt: skip
    metrics = trainer.train().metrics
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    tokens = max(entry.get("num_tokens", 0) for entry in logs)
    return {"tokens_per_s": tokens / metrics["train_runtime"], "losses": [entry["loss"] for entry in logs]}


def _side(args) -> None:
    """One side in this process: train, then print its figures as the last line (JSON)."""
    import resource

    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    settings = _settings(args.gradient_checkpointing)
    rows = json.loads(Path(args.data).read_text())
    run = run_ours if args.side == "ours" else run_trl
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(Path(args.model_dir), rows, args, settings, Path(tmp))
    if torch.cuda.is_available():
        figures["peak_memory"] = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU"
    else:
        figures["peak_memory"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"
    print(json.dumps({**figures, "settings": settings}))


def _run_side(side: str, model_dir: Path, data: Path, args) -> dict:
    command = [sys.executable, __file__, "--side", side, "--model-dir", str(model_dir), "--data", str(data),
               "--steps", str(args.steps), "--batch", str(args.batch),
               "--max-length", str(args.max_length)]  # fmt: skip
    if args.gradient_checkpointing:
        command.append("--gradient-checkpointing")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(shape: str, name: str, r: dict) -> str:
    losses = r["losses"][:50]
    return (f"{shape:14} {name:10} {r['tokens_per_s']:12.0f} {r['peak_memory']:>16} "
            f"{losses[0]:8.3f} {sum(losses) / len(losses):8.3f} {losses[-1]:8.3f}")  # fmt: skip


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=not torch.cuda.is_available(),
                        help="tiny shapes (the default without CUDA)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4, help="packed rows per step")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per packed row (2048; tiny: 256)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--side", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_length = args.max_length or (256 if args.tiny else 2048)
    if args.side:
        return _side(args)
    # Enough rows for every step's packed rows (median row ~ max_length/8 tokens), and some to spare.
    rows = sft_rows(args.steps * args.batch * 10 + 32, args.max_length, seed=1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.json"
        data.write_text(json.dumps(rows))
        for shape in args.shapes:
            model_dir = build_model(shape, args.tiny, Path(tmp) / shape)
            results[shape] = {side: _run_side(side, model_dir, data, args) for side in ("ours", "trl")}
    settings = next(iter(results.values()))["ours"]["settings"]
    print(f"device: {settings['device']}, {'tiny' if args.tiny else 'full'} shapes, {args.steps} steps, "
          f"batch {args.batch} x {args.max_length} tokens, attention {settings['attn']}, "
          f"bf16 {settings['bf16']}, liger {settings['liger']}, "
          f"gradient checkpointing {settings['gradient_checkpointing']}")  # fmt: skip
    print(f"{'shape':14} {'trainer':10} {'tokens/s':>12} {'peak memory':>16} {'loss@1':>8} {'mean':>8} {'loss@end':>8}")
    for shape, pair in results.items():
        print(_row(shape, "modelops", pair["ours"]))
        print(_row(shape, "TRL SFT", pair["trl"]))
    for shape, pair in results.items():
        print(f"{shape}: modelops / TRL tokens/s = {pair['ours']['tokens_per_s'] / pair['trl']['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
