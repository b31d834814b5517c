"""modelops: load, sanitize, fine-tune and evaluate models, declared in Hydra config.

The public names import lazily, so `import modelops` stays cheap until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Dataset": "modelops.data.dataset",
    "DatasetSanitizer": "modelops.sanitize.sanitizer",
    "FineTuningJob": "modelops.train.job",
    "Evaluator": "modelops.evaluate.evaluator",
    "EvalResults": "modelops.evaluate.results",
}

__all__ = ["Dataset", "DatasetSanitizer", "EvalResults", "Evaluator", "FineTuningJob"]

if TYPE_CHECKING:
    from modelops.data.dataset import Dataset
    from modelops.evaluate.evaluator import Evaluator
    from modelops.evaluate.results import EvalResults
    from modelops.sanitize.sanitizer import DatasetSanitizer
    from modelops.train.job import FineTuningJob


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'modelops' has no attribute {name!r}")
