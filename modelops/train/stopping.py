"""SIGTERM/SIGINT: stop at once, or (in the training loop) at a step boundary, after a checkpoint."""

from __future__ import annotations

import signal
import threading


class TrainingCancelled(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM/SIGINT) and stopped after writing a checkpoint."""


class StopRequest:
    """While active, SIGTERM/SIGINT are handled here; on exit the previous handlers come back.

    With `defer=True` (the training loop) a signal only sets `requested`: the loop checks it after
    each step, checkpoints and raises `TrainingCancelled`. A second signal, or any signal with
    `defer=False`, stops at once with a `KeyboardInterrupt` naming the signal.

    Args:
        defer: wait for the loop to ask, instead of interrupting where the program is.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, defer: bool = True) -> None:
        self.defer = defer
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def requested_anywhere(self, accelerator) -> bool:
        """Whether any process got a signal (a collective call: every process makes it, after each step)."""
        if accelerator.num_processes == 1:
            return self.requested
        import torch

        flag = torch.tensor(float(self.requested), device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested or not self.defer:
            raise KeyboardInterrupt(name)
        self.signal_name = name

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be set from the main thread; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
