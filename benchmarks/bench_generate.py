"""Generation throughput: `modelops.models.generation.generate` against a per-row `model.generate` loop and
transformers' text-generation pipeline with batching, side by side in one process.

All three decode greedily with the KV cache from the same prompts (varied lengths) with the same model, up to
`--new-tokens` tokens or EOS. The per-row loop is what one writes first: one `generate` call per prompt, no
padding. The pipeline gets `batch_size` and a left-padding tokenizer, as its docs say for decoder-only models;
it batches prompts in their given order. Ours sorts prompts by length, left-pads within a batch and stops rows
at EOS. The script prints generated tokens/s of each (tokens up to EOS, the same count for every side when the
outputs agree), the ratios, and how many outputs equal the per-row loop's.

    python benchmarks/bench_generate.py [--model tiny-llama] [--prompts 48] [--batch-size 16] [--new-tokens 24]
"""

from __future__ import annotations

import argparse
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ["the", "a", "river", "city", "old", "new", "north", "south", "stone", "bridge", "green", "blue", "small"]


def _prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 40))) + ":" for _ in range(count)]


def _per_row(model, tokenizer, prompts, new_tokens: int, counts: list[int]) -> list[str]:
    """Greedy outputs one prompt at a time; `counts` gets each row's generated tokens (EOS included)."""
    import torch

    outputs = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        counts.append(out.shape[1] - ids["input_ids"].shape[1])
        outputs.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return outputs


def _pipeline(model, tokenizer, prompts, new_tokens: int, batch_size: int) -> list[str]:
    from transformers import pipeline

    tokenizer.padding_side = "left"
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    out = generator(prompts, batch_size=batch_size, max_new_tokens=new_tokens, do_sample=False,
                    return_full_text=False, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    tokenizer.padding_side = "right"
    return [row[0]["generated_text"] for row in out]


def _ours(model, tokenizer, prompts, new_tokens: int, batch_size: int) -> list[str]:
    from modelops.models.generation import generate

    return generate(model, tokenizer, prompts, max_new_tokens=new_tokens, batch_size=batch_size)


def _timed(fn, *args) -> tuple[list[str], float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    from modelops.models.loading import load_model, load_tokenizer
    from modelops.models.spec import ModelSpec

    torch.manual_seed(0)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(ModelSpec(args.model, task="causal_lm")).eval().to(device)
    tokenizer = load_tokenizer(args.model)
    prompts = _prompts(args.prompts, seed=0)
    _ours(model, tokenizer, prompts[:4], 4, 4)  # warm-up: first-call allocations and lazy imports
    counts: list[int] = []
    per_row, t_row = _timed(_per_row, model, tokenizer, prompts, args.new_tokens, counts)
    piped, t_pipe = _timed(_pipeline, model, tokenizer, prompts, args.new_tokens, args.batch_size)
    ours, t_ours = _timed(_ours, model, tokenizer, prompts, args.new_tokens, args.batch_size)
    tokens = sum(counts)
    print(f"{args.model} on {device}: {len(prompts)} prompts, batch {args.batch_size}, up to {args.new_tokens} "
          f"new tokens, {tokens} generated tokens (per-row loop)")  # fmt: skip
    for name, seconds, out in (("per-row generate", t_row, per_row), ("pipeline", t_pipe, piped),
                               ("modelops", t_ours, ours)):  # fmt: skip
        same = sum(a == b for a, b in zip(out, per_row, strict=True))
        print(f"  {name:<17} {seconds:7.2f} s  {tokens / seconds:9.1f} tokens/s  same as per-row: {same}/{len(out)}")
    print(f"  modelops / per-row: {t_row / t_ours:.2f}x   modelops / pipeline: {t_pipe / t_ours:.2f}x")


if __name__ == "__main__":
    main()
