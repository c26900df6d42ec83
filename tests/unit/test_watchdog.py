"""The per-process watchdog timer: armed once, idle between chunks, re-armed if something took it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

import pytest

from common.errors import TaskTimeout
from tests.support import wait_until
from worker.execute import Watchdog, disarm_watchdog

HANG_GUARD = 60.0
"""How long an overrunning task sleeps: far past any limit here, so only the watchdog ends it early."""


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGALRM)
    yield
    disarm_watchdog()
    signal.signal(signal.SIGALRM, previous)


class AlarmCounter:
    """Stands in front of the watchdog's SIGALRM handler and counts the alarms it passes on."""

    def __init__(self) -> None:
        handler = signal.getsignal(signal.SIGALRM)
        assert callable(handler), "the watchdog's handler is not installed"
        self.handler: Callable[[int, FrameType | None], object] = handler
        self.count = 0
        signal.signal(signal.SIGALRM, self)

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.handler(signum, frame)

    def wait_for(self, more: int, what: str) -> None:
        """Until `more` alarms after this call have been handled."""
        target = self.count + more
        wait_until(lambda: self.count >= target, 30, f"{more} alarms {what}", interval=0.01)


def _overrun(watchdog: Watchdog) -> float:
    """Run a task that overruns; return how long it ran before the watchdog stopped it."""
    started = time.perf_counter()
    watchdog.task_started = started
    with pytest.raises(TaskTimeout):
        time.sleep(HANG_GUARD)
    return time.perf_counter() - started


def test_the_timer_stays_armed_between_chunks_and_stops_overruns_in_each() -> None:
    with Watchdog(0.2) as first:
        # Stopped (the sleep raised), and not before its limit: a lower bound, which no slow machine breaks.
        assert _overrun(first) > 0.2
        alarms = AlarmCounter()
    assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.05)  # still armed, idle
    alarms.wait_for(3, "between chunks")  # they do nothing: no task is stopped, nothing raises
    with Watchdog(0.2) as second:
        assert _overrun(second) > 0.2


def test_a_timer_taken_by_something_else_is_armed_again() -> None:
    with Watchdog(0.2):
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    with Watchdog(0.2) as watchdog:
        assert signal.getitimer(signal.ITIMER_REAL)[1] == pytest.approx(0.05)
        assert _overrun(watchdog) > 0.2


def test_a_task_within_its_limit_is_not_stopped() -> None:
    with Watchdog(0.2) as watchdog:
        alarms = AlarmCounter()
        watchdog.limit_task(HANG_GUARD)  # the task's own limit, longer than this test runs
        watchdog.task_started = time.perf_counter()
        # Eight alarms at the 0.05 s period span more than the worker's 0.2 s limit: each checked the
        # task against its own limit and let it run.
        alarms.wait_for(8, "while the task runs")
        assert watchdog.task_started is not None  # not stopped (a stop clears it, and raises)
        watchdog.task_started = None
        watchdog.limit_task(None)
        alarms.wait_for(3, "between tasks")  # no task is timed
