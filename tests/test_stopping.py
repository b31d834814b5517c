"""The one SIGTERM/SIGINT handler: at once outside the training loop, at a step boundary inside it."""

from __future__ import annotations

import os
import signal

import pytest

from modelops.train.stopping import StopRequest


def test_outside_the_loop_a_signal_stops_at_once_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), StopRequest(defer=False):
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_in_the_loop_the_first_signal_is_a_request_and_a_second_one_stops_at_once():
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt, match="SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)


def test_the_loop_request_nests_inside_the_worker_handler():
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), StopRequest(defer=False):
        with StopRequest() as inner:
            os.kill(os.getpid(), signal.SIGTERM)
            assert inner.requested  # the loop's handler took it: nothing raised yet
        os.kill(os.getpid(), signal.SIGTERM)  # after the loop, the worker's handler is back
