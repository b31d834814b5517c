"""GPU fine-tuning throughput and memory: modelops' loop against TRL's `SFTTrainer`, both at their best settings.

Nothing is downloaded. Each model is built from a transformers config with seeded random weights, in
the shape of Qwen2.5-0.5B (Qwen2, 24 layers, hidden 896, GQA 14/2, vocab 151936, tied), of
Llama-3.2-1B (16 layers, hidden 2048, GQA 32/8, vocab 128256, tied) and of Llama-3.1-8B (32 layers,
hidden 4096, GQA 32/8, vocab 128256, untied; trained with LoRA r 16 on all linear layers over a frozen
bf16 base), with a byte-level tokenizer. On a machine without CUDA (or with `--tiny`) the shapes
shrink to 2 layers of width 64, so the script runs on a CPU in seconds (CI runs it that way);
`--full-vocab` keeps each shape's real vocabulary there, so the LM head and its logits dominate, as
they do on a GPU, and the peak RSS of each side shows what the loss computation costs.

The data are prompt/completion rows with a realistic length spread (log-normal, median ~1/8 of
`--max-length`, long tail cut at `--max-length`). All sides train the same weights (fp32, or the 8B
shape's bf16 base under fp32 LoRA) with the same batch (packed rows of `--max-length` tokens), steps,
AdamW (fused on CUDA), linear decay, clipping at 1.0, loss on the completions only:

- modelops: `trainer.batching=packing` (padding-free layout chosen by the model probe),
  `mixed_precision=auto`, Liger where installed (`trainer.liger`), the loss from hidden states in chunks.
- modelops full logits: the same with `trainer.chunked_loss=false` (full-vocabulary logits of every
  position, the path before chunking): what the chunked loss saves.
- TRL: `packing=True` (BFD, padding-free), its default loss (labelled positions only, in chunks), bf16
  on a GPU that has it (fp32 on a CPU: TRL's default bf16 is slow there), Liger where installed.
- All: flash_attention_2 when flash-attn and CUDA are there, else sdpa; gradient checkpointing only
  with `--gradient-checkpointing` (the same on every side).

Each side runs in its own process, so peak memory is its own: `torch.cuda.max_memory_allocated` on a
GPU, peak RSS of the process on a CPU (which includes ~0.5-1 GiB of Python, torch and data). Tokens/s
counts non-padding input tokens of the training loop. MFU = model FLOPs per token x tokens/s / peak
FLOP/s, with 6 FLOPs per weight of every linear layer (LM head included) and token for full
fine-tuning, 4 for a frozen base under LoRA (no weight gradients), attention scores not counted (a
lower bound); the peak is `--peak-tflops`, else measured with a bf16 matmul on a GPU (an fp32 one on a
CPU, where training runs in fp32). The losses are the first `--steps` (at most 50) logged training
losses: start, mean, end, and the first five as the curve's head.

`--max-memory GiB` adds, per shape and trainer, the largest tokens per step that fits under the limit:
batches of 1, 2, 4, ... packed rows, 2 steps each, in a process of their own (on a GPU its allocator is
capped at the limit, so a batch that does not fit fails with out-of-memory; on a CPU a batch fits when
its peak RSS stays under the limit).

    python benchmarks/bench_gpu.py [--tiny [--full-vocab]] [--steps 50] [--batch 4] [--max-length 2048]
        [--shapes qwen2.5-0.5b llama-3.2-1b llama-3.1-8b] [--sides ours full trl]
        [--gradient-checkpointing] [--peak-tflops T] [--max-memory GiB [--max-batch 64]]
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
    "llama-3.1-8b": ("LlamaConfig", {
        "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072,
        "rope_theta": 5e5, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
    }),
}  # fmt: skip
#: Shapes trained with LoRA over a frozen bf16 base (bf16 on a GPU; fp32 on a CPU, where bf16 is slow).
LORA_SHAPES = {"llama-3.1-8b": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}}
TINY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "head_dim": 16,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}  # fmt: skip
SIDES = {"ours": "modelops", "full": "full logits", "trl": "TRL SFT"}


def shape_config(shape: str, tiny: bool, full_vocab: bool):
    """The transformers config of `shape`: full size, or tiny (with its real vocabulary if `full_vocab`)."""
    import transformers

    kind, options = SHAPES[shape]
    small = {k: v for k, v in TINY.items() if not (full_vocab and k == "vocab_size")} if tiny else {}
    return getattr(transformers, kind)(**{**options, **small})


def build_model(shape: str, tiny: bool, directory: Path, full_vocab: bool = False) -> Path:
    """Write a random-weight model of `shape` and the byte tokenizer to `directory`."""
    import torch
    import transformers

    from modelops.models.tiny import byte_tokenizer

    config = shape_config(shape, tiny, full_vocab)
    torch.manual_seed(SEED)
    dtype = _base_dtype(shape)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(directory)
    byte_tokenizer().save_pretrained(directory)
    return directory


def _base_dtype(shape: str):
    import torch

    return torch.bfloat16 if shape in LORA_SHAPES and torch.cuda.is_available() else torch.float32


def flops_per_token(shape: str, tiny: bool, full_vocab: bool) -> float:
    """Training FLOPs per token: 6 per linear weight (4 under LoRA: frozen weights get no gradient)."""
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(shape_config(shape, tiny, full_vocab))
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return (4 if shape in LORA_SHAPES else 6) * weights


def peak_flops(given_tflops: float | None) -> tuple[float, str]:
    """The chip's peak FLOP/s: given, or measured with a bf16 matmul (GPU) / an fp32 matmul (CPU)."""
    import time

    import torch

    if given_tflops:
        return given_tflops * 1e12, "--peak-tflops"
    cuda = torch.cuda.is_available()
    n, dtype, device = (8192, torch.bfloat16, "cuda") if cuda else (1024, torch.float32, "cpu")
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(5):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        if cuda:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / 10)
    return 2 * n**3 / best, f"measured {'bf16' if cuda else 'fp32'} {n}^3 matmul"


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


def _rows_needed(steps: int, batch: int) -> int:
    # Enough rows for every step's packed rows (median row ~ max_length/8 tokens), and some to spare.
    return steps * batch * 10 + 32


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


def _lora(shape: str):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", **LORA_SHAPES[shape]) if shape in LORA_SHAPES else None


def run_ours(model_dir: Path, rows: list[dict], args, settings: dict, workdir: Path) -> dict:
    from modelops.data.dataset import Dataset
    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    dtype = str(_base_dtype(args.shape)).removeprefix("torch.")
    spec = ModelSpec(name_or_path=str(model_dir), task="causal_lm", max_length=args.max_length, dtype=dtype,
                     attn_implementation=settings["attn"], peft=_lora(args.shape),
                     gradient_checkpointing=settings["gradient_checkpointing"])  # fmt: skip
    config = TrainConfig(max_steps=args.steps, batch_size=args.batch, learning_rate=LR, weight_decay=0.0,
                         warmup_ratio=0.0, max_grad_norm=1.0, batching="packing", mixed_precision="auto",
                         liger=settings["liger"], seed=SEED, log_every=1, resume=None, checkpoint_every=None,
                         cache_dir=str(workdir / "cache"), preview_examples=0, loss_on="answer",
                         chunked_loss=args.side == "ours")  # fmt: skip
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
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=_base_dtype(args.shape), use_kernels=False,
                                                 attn_implementation=settings["attn"])  # fmt: skip
    config = SFTConfig(
        output_dir=str(workdir / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=LR, weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", max_grad_norm=1.0,
        bf16=settings["bf16"], fp16=False, gradient_checkpointing=settings["gradient_checkpointing"],
        packing=True, max_length=args.max_length, completion_only_loss=True, use_liger_kernel=settings["liger"],
        optim="adamw_torch_fused" if cuda else "adamw_torch", use_cpu=not cuda, seed=SEED, logging_steps=1,
        save_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=_lora(args.shape))  # fmt: skip
    metrics = trainer.train().metrics
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    tokens = max(entry.get("num_tokens", 0) for entry in logs)
    return {"tokens_per_s": tokens / metrics["train_runtime"], "losses": [entry["loss"] for entry in logs]}


def _cap_gpu_memory(limit_gib: float | None) -> None:
    """Cap this process's CUDA allocator at `limit_gib`: a batch that needs more fails with out-of-memory."""
    import torch

    if limit_gib and torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gib * 2**30 / total))


def _side(args) -> None:
    """One side in this process: train, then print its figures as the last line (JSON)."""
    import resource

    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    _cap_gpu_memory(args.memory_limit)
    settings = _settings(args.gradient_checkpointing)
    rows = json.loads(Path(args.data).read_text())[: _rows_needed(args.steps, args.batch)]
    run = run_trl if args.side == "trl" else run_ours
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(Path(args.model_dir), rows, args, settings, Path(tmp))
    if torch.cuda.is_available():
        figures["peak_gib"], figures["peak_kind"] = torch.cuda.max_memory_allocated() / 2**30, "GPU"
    else:
        figures["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        figures["peak_kind"] = "RSS"
    print(json.dumps({**figures, "settings": settings}))


def _run_side(side: str, shape: str, model_dir: Path, data: Path, args, batch: int | None = None,
              steps: int | None = None, check: bool = True) -> dict | None:  # fmt: skip
    command = [sys.executable, __file__, "--side", side, "--shape", shape, "--model-dir", str(model_dir),
               "--data", str(data), "--steps", str(steps or args.steps), "--batch", str(batch or args.batch),
               "--max-length", str(args.max_length)]  # fmt: skip
    if args.gradient_checkpointing:
        command.append("--gradient-checkpointing")
    if batch is not None and args.max_memory:
        command += ["--memory-limit", str(args.max_memory)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if check:
            raise SystemExit(f"{side} failed:\n{done.stderr[-4000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_fit(side: str, shape: str, model_dir: Path, data: Path, args) -> int:
    """The most tokens per step (batch x max_length) `side` trains under `--max-memory` GiB: 0 if none fits."""
    fits, batch = 0, 1
    while batch <= args.max_batch:
        figures = _run_side(side, shape, model_dir, data, args, batch=batch, steps=2, check=False)
        if figures is None or figures["peak_gib"] > args.max_memory:
            break
        fits, batch = batch, batch * 2
    return fits * args.max_length


def _row(shape: str, name: str, r: dict, mfu: float) -> str:
    losses = r["losses"][:50]
    memory = f"{r['peak_gib']:.2f} GiB {r['peak_kind']}"
    return (f"{shape:14} {name:12} {r['tokens_per_s']:12.0f} {memory:>16} {100 * mfu:7.2f}% "
            f"{losses[0]:8.3f} {sum(losses) / len(losses):8.3f} {losses[-1]:8.3f}")  # fmt: skip


def _report(results: dict, sides: list[str], mfu: dict, fits: dict) -> None:
    print(f"{'shape':14} {'trainer':12} {'tokens/s':>12} {'peak memory':>16} {'MFU':>8} "
          f"{'loss@1':>8} {'mean':>8} {'loss@end':>8}")  # fmt: skip
    for shape, by_side in results.items():
        for side in sides:
            print(_row(shape, SIDES[side], by_side[side], mfu[shape][side]))
    for shape, by_side in results.items():
        for side in sides:
            head = ", ".join(f"{loss:.3f}" for loss in by_side[side]["losses"][:5])
            print(f"{shape}: {SIDES[side]} loss curve head: {head}")
    for shape, r in results.items():
        if "ours" in r and "trl" in r:
            print(f"{shape}: modelops / TRL tokens/s = {r['ours']['tokens_per_s'] / r['trl']['tokens_per_s']:.2f}x")
            print(f"{shape}: modelops / TRL peak memory = {r['ours']['peak_gib'] / r['trl']['peak_gib']:.2f}x")
        if "ours" in r and "full" in r:
            print(f"{shape}: modelops / full logits peak memory = {r['ours']['peak_gib'] / r['full']['peak_gib']:.2f}x")
    for shape, by_side in fits.items():
        for side, tokens in by_side.items():
            print(f"{shape}: {SIDES[side]} fits {tokens} tokens per step under the memory limit")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=not torch.cuda.is_available(),
                        help="tiny shapes (the default without CUDA)")  # fmt: skip
    parser.add_argument("--full-vocab", action="store_true", help="tiny shapes keep their real vocabulary")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4, help="packed rows per step")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per packed row (2048; tiny: 256)")
    parser.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "llama-3.2-1b"], choices=list(SHAPES))
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense bf16 peak (TFLOP/s)")
    parser.add_argument("--max-memory", type=float, default=None, help="GiB: largest tokens/step that fits")
    parser.add_argument("--max-batch", type=int, default=64, help="--max-memory: the largest batch to try")
    parser.add_argument("--side", choices=list(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=list(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--memory-limit", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_length = args.max_length or (256 if args.tiny else 2048)
    if args.side:
        return _side(args)
    peak, peak_how = peak_flops(args.peak_tflops)
    most = max(args.batch, args.max_batch if args.max_memory else 0)
    rows = sft_rows(_rows_needed(args.steps, most), args.max_length, seed=1)
    results, mfu, fits = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.json"
        data.write_text(json.dumps(rows))
        for shape in args.shapes:
            model_dir = build_model(shape, args.tiny, Path(tmp) / shape, args.full_vocab)
            results[shape] = {side: _run_side(side, shape, model_dir, data, args) for side in args.sides}
            per_token = flops_per_token(shape, args.tiny, args.full_vocab)
            mfu[shape] = {side: per_token * r["tokens_per_s"] / peak for side, r in results[shape].items()}
            if args.max_memory:
                fits[shape] = {side: largest_fit(side, shape, model_dir, data, args) for side in args.sides}
    settings = next(iter(results.values()))[args.sides[0]]["settings"]
    vocab = "full vocabulary" if args.full_vocab else "tiny vocabulary"
    print(f"device: {settings['device']}, {'tiny (' + vocab + ')' if args.tiny else 'full'} shapes, "
          f"{args.steps} steps, batch {args.batch} x {args.max_length} tokens, attention {settings['attn']}, "
          f"bf16 {settings['bf16']}, liger {settings['liger']}, "
          f"gradient checkpointing {settings['gradient_checkpointing']}, "
          f"peak {peak / 1e12:.2f} TFLOP/s ({peak_how})")  # fmt: skip
    _report(results, args.sides, mfu, fits)


if __name__ == "__main__":
    main()
