"""conf/ and recipes/ are found from a checkout and from a wheel installed somewhere else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import modelops, modelops.config.paths as p
from modelops.config.build import compose
from modelops.config.validate import validate
cfg = compose(["+recipe=lora_small"])
validate(cfg)
print(p.conf_dir()); print(p.recipes_dir()); print(cfg.trainer.learning_rate)
"""


def test_checkout_finds_its_folders():
    from modelops.config.paths import conf_dir, recipes_dir

    assert conf_dir() == ROOT / "conf"
    assert recipes_dir() == ROOT / "recipes"


@pytest.mark.slow
def test_wheel_carries_conf_and_recipes(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    wheel = next(wheels.glob("modelops-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    conf, recipes, lr = proc.stdout.split()
    assert Path(conf) == site / "modelops" / "_resources" / "conf"
    assert Path(recipes) == site / "modelops" / "_resources" / "recipes"
    assert float(lr) > 0
