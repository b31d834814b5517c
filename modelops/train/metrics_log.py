"""Where training metrics go: one call per row, fanned out to every sink.

A sink is any callable that takes a row (`{"step": N, "loss": ..., ...}`); it is called on the main
process only. The loop's sinks are `metrics.jsonl` and Accelerate's trackers (`trainer.log_with`);
another one is one more entry in the list given to `MetricsLog`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelops.io import append_jsonl
from modelops.log import say
from modelops.train.record import JobRecord

MetricSink = Callable[[dict[str, Any]], None]


def jsonl_sink(path: Path) -> MetricSink:
    """Append each row to a JSON-lines file (`metrics.jsonl`)."""
    return lambda row: append_jsonl(path, row)


def tracker_sink(accelerator) -> MetricSink:
    """Log each row to the trackers started with `accelerator.init_trackers`, at its step."""
    return lambda row: accelerator.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])


class MetricsLog:
    """The training run's metrics: training rows (also shown and recorded in `job.json`) and evaluation rows.

    Args:
        sinks: where every row goes.
        record: `job.json`, which gets progress, tokens/s and the last loss.
        total_steps: the step budget (for progress).
        initial_step: where the bar starts (a resumed run).
        main: whether this is the main process; the others write nothing.
    """

    def __init__(self, sinks: Sequence[MetricSink], record: JobRecord, total_steps: int, initial_step: int, main: bool):
        from tqdm.auto import tqdm

        self.sinks, self.record, self.total_steps, self.main = list(sinks), record, total_steps, main
        # A bar on a terminal; a line per logged step in a log file.
        self.console = main and not sys.stderr.isatty()
        self.bar = tqdm(total=total_steps, initial=initial_step, desc="train", disable=not main or self.console)

    def write(self, row: dict[str, Any]) -> None:
        """Send `row` to every sink."""
        if self.main:
            for sink in self.sinks:
                sink(row)

    def stepped(self) -> None:
        self.bar.update(1)

    def train(self, step: int, epoch: int, loss: float, lr: float, tokens_per_s: float,
              extra: Mapping[str, float] | None = None) -> None:  # fmt: skip
        """A training row: written, shown, and recorded as the run's progress; `extra`: the objective's metrics."""
        row = {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "tokens_per_s": tokens_per_s, **(extra or {})}
        self.write(row)
        if self.console:
            say(f"step {step}/{self.total_steps} loss {loss:.4f} lr {lr:.2e} tok/s {tokens_per_s:.0f}")
        self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}")
        self.record.update(progress=step / self.total_steps, tokens_per_s=tokens_per_s, last_loss=loss)

    def close(self) -> None:
        self.bar.close()
