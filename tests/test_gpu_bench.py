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
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--steps", "3"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^(\S+)\s+(modelops|TRL SFT)\s+(\d+)\s+([\d.]+ GiB RSS)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
                      done.stdout, re.MULTILINE)  # fmt: skip
    assert [(shape, name) for shape, name, *_ in rows] == [
        ("qwen2.5-0.5b", "modelops"), ("qwen2.5-0.5b", "TRL SFT"),
        ("llama-3.2-1b", "modelops"), ("llama-3.2-1b", "TRL SFT"),
    ]  # fmt: skip
    for *_, tokens_per_s, _memory, first, _mean, _last in rows:
        assert int(tokens_per_s) > 0
        # Random weights predict close to uniformly over the tiny vocabulary: the first loss is near ln(512).
        assert abs(float(first) - math.log(512)) < 0.3
    assert len(re.findall(r"modelops / TRL tokens/s = [\d.]+x", done.stdout)) == 2
