"""The per-process watchdog timer: armed once, idle between chunks, re-armed if something took it."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from common.errors import TaskTimeout
from worker.execute import Watchdog, disarm_watchdog


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGALRM)
    yield
    disarm_watchdog()
    signal.signal(signal.SIGALRM, previous)


def _overrun(watchdog: Watchdog, seconds: float = 3.0) -> float:
    started = time.perf_counter()
    watchdog.task_started = started
    with pytest.raises(TaskTimeout):
        time.sleep(seconds)
    return time.perf_counter() - started


def test_the_timer_stays_armed_between_chunks_and_stops_overruns_in_each() -> None:
    with Watchdog(0.2) as first:
        assert _overrun(first) < 1.0
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.05)  # still armed, idle
    time.sleep(0.2)  # alarms between chunks do nothing
    with Watchdog(0.2) as second:
        assert _overrun(second) < 1.0


def test_a_timer_taken_by_something_else_is_armed_again() -> None:
    with Watchdog(0.2):
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    with Watchdog(0.2) as watchdog:
        assert _overrun(watchdog) < 1.0


def test_a_task_within_its_limit_is_not_stopped() -> None:
    with Watchdog(0.3) as watchdog:
        watchdog.task_started = time.perf_counter()
        time.sleep(0.2)
        watchdog.task_started = None
        time.sleep(0.2)  # between tasks: no task is timed
