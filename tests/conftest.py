"""Shared fixtures: offline Hugging Face, tiny settings for the real recipes."""

from __future__ import annotations

import os

import pytest

# Nothing may download in tests: the models are packaged or built from config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs tests start are tracked in ./outputs/mlflow.db (or a store a test starts), never on a team's server.
os.environ.pop("MLFLOW_TRACKING_URI", None)

#: Overrides that shrink the default recipe to seconds on a 2-core CPU; values stay realistic.
TINY = [
    "dataset.n_train=320",
    "dataset.n_validation=32",
    "dataset.n_test=128",
    "trainer.batch_size=16",
    "trainer.epochs=1",
    "trainer.learning_rate=2e-3",
    "trainer.warmup_ratio=0.0",
    "trainer.log_every=5",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
