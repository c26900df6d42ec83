"""The event loop of async slots: asyncio's, with a selector that wakes on time."""

from __future__ import annotations

import asyncio
import math
import selectors
import time


class PreciseSelector(selectors.DefaultSelector):
    """The platform's selector, waking on time to a fraction of a millisecond.

    epoll and poll wait in whole milliseconds, rounded up: a sleep ended up to a millisecond late,
    and timers due microseconds after the one that woke the loop waited another whole millisecond
    (each wave of slots but its first task). The sub-millisecond rest is slept with nanosleep, then
    the selector is polled without waiting, which raised W3's efficiency (docs/performance.md).
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Ready file objects, waiting at most `timeout` seconds (None: until one is ready)."""
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        deadline = time.monotonic() + timeout
        whole_ms = math.floor(timeout * 1000) / 1000 - 1e-6  # the base class rounds up: stay below
        if whole_ms > 0:
            ready = super().select(whole_ms)
            if ready:
                return ready
        rest = deadline - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        return super().select(0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire on time (see PreciseSelector)."""
    return asyncio.SelectorEventLoop(PreciseSelector())
