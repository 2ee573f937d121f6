"""``StopAfterEpisode``: the first Ctrl-C asks, the second interrupts, and once training has ended none does."""

import os
import signal

import pytest

from townlet.training.interrupt import StopAfterEpisode


def press_ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to the main thread before the next bytecode


def test_the_first_ctrl_c_asks_to_stop_and_the_second_interrupts():
    with StopAfterEpisode() as stop:
        press_ctrl_c()
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            press_ctrl_c()


def test_after_training_has_settled_ctrl_c_changes_nothing():
    with StopAfterEpisode() as stop:
        stop.settle()
        press_ctrl_c()
        press_ctrl_c()
        assert not stop()


def test_the_previous_handler_is_back_afterwards():
    before = signal.getsignal(signal.SIGINT)
    with StopAfterEpisode():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
