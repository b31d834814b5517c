"""Ties: drop preference pairs whose chosen and rejected answers are the same once normalised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step

REASON = "tie:chosen_equals_rejected"


@dataclass
class DropTies(SanitizeStep):
    """Reject pairs whose `chosen` equals `rejected`: a tie teaches no preference, only noise.

    The loader refuses pairs that are identical as written; ties appear when earlier steps
    rewrite the text (``"Paris "`` and ``"Paris"`` after `normalize`, two e-mail addresses both
    ``<EMAIL>`` after `pii`), so this step runs after them. Text pairs compare as strings;
    chat pairs compare every turn's role and content.
    """

    name: ClassVar[str] = "drop_ties"
    formats: ClassVar[tuple[str, ...]] = ("preference",)

    def __call__(self, table, ctx: StepContext):
        def batch_fn(batch):
            reasons = [REASON if a == b else "" for a, b in zip(batch["chosen"], batch["rejected"], strict=True)]
            return flags(len(reasons), reasons)

        return map_step(table, ctx, batch_fn, parallel=False)
