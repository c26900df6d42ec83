"""Task functions for the peers (RQ imports them by dotted path, ProcessPoolExecutor pickles them)."""

from __future__ import annotations

import time


def add(a: int, b: int) -> int:
    """a + b"""
    return a + b


def sleep(seconds: float) -> float:
    """Sleep, like the built-in `sleep` task; returns its argument."""
    time.sleep(seconds)
    return seconds
