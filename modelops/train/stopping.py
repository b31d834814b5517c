"""Stopping on SIGTERM/SIGINT at a step boundary, so the run can checkpoint before it ends."""

from __future__ import annotations

import signal
import threading


class TrainingCancelled(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM/SIGINT) and stopped after writing a checkpoint."""


class StopRequest:
    """While active, SIGTERM/SIGINT only set `requested`; the loop checks it after each step.

    A second signal stops at once (KeyboardInterrupt), for a user who does not want to wait.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be set from the main thread; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
