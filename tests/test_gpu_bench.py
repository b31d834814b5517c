"""The GPU benchmark runs end to end on a CPU with its tiny shapes (the full shapes need a GPU)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_runs_both_trainers_on_the_tiny_shapes():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--steps", "3",
                           "--sides", "ours", "trl"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    row = r"^(\S+)\s+(modelops|TRL SFT)\s+(\d+)\s+([\d.]+ GiB RSS)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$"
    rows = re.findall(row, done.stdout, re.MULTILINE)
    assert [(shape, name) for shape, name, *_ in rows] == [
        ("qwen2.5-0.5b", "modelops"), ("qwen2.5-0.5b", "TRL SFT"),
        ("llama-3.2-1b", "modelops"), ("llama-3.2-1b", "TRL SFT"),
    ]  # fmt: skip
    for *_, tokens_per_s, _memory, mfu, first, _mean, _last in rows:
        assert int(tokens_per_s) > 0 and float(mfu) > 0
        # Random weights predict close to uniformly over the tiny vocabulary: the first loss is near ln(512).
        assert abs(float(first) - math.log(512)) < 0.3
    assert len(re.findall(r"modelops / TRL tokens/s = [\d.]+x", done.stdout)) == 2


@pytest.mark.slow
def test_bench_gpu_full_vocab_lora_shape_and_memory_limit():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--full-vocab", "--steps", "2",
               "--batch", "1", "--max-length", "64", "--shapes", "llama-3.1-8b", "--sides", "ours", "trl",
               "--max-memory", "64", "--max-batch", "2"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    row = r"^llama-3.1-8b\s+(?:modelops|TRL SFT)\s+\d+\s+[\d.]+ GiB RSS\s+[\d.]+%\s+([\d.]+)"
    first = re.findall(row, done.stdout, re.MULTILINE)
    # the real 128256-token vocabulary: a random model's first loss is near ln(128256), on both sides
    assert len(first) == 2 and all(abs(float(loss) - math.log(128256)) < 0.3 for loss in first)
    fits = re.findall(r"^llama-3.1-8b: (modelops|TRL SFT) fits (\d+) tokens per step", done.stdout, re.MULTILINE)
    # 64 GiB holds every batch the search tries (up to 2 rows of 64 tokens) on a tiny model
    assert sorted(fits) == [("TRL SFT", "128"), ("modelops", "128")]
