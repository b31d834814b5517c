"""Evaluation: `Evaluator`, its metrics registry and results."""

from modelops.evaluate.evaluator import Evaluator
from modelops.evaluate.results import EvalResults

__all__ = ["EvalResults", "Evaluator"]
