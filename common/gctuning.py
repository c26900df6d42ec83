"""Keep Python's full garbage collections out of the hot loops, without turning the collector off.

A full (oldest-generation) collection scans every object of the process, a long pause in a
dispatcher that has imported redis, rq and click, and one came in every W1 batch. Young
collections stay cheap and keep running; only full ones are held back while a batch is being
submitted and awaited, and run as usual after it; young ones run less often. Workers also freeze
what exists after start-up, so full collections never rescan the imported modules. What this
saved is in docs/performance.md ("Figures that left the code").
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD_BACK = 1_000_000_000
"""A third-generation threshold no batch reaches."""
YOUNG_THRESHOLD = 20_000
"""Net new container objects between young collections (Python's default is 700). A chunk's rows
come and go well within it, so the hot loops run with no collection at all; garbage cycles made
by tasks are still collected, a little later."""

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def full_collections_deferred() -> Iterator[None]:
    """Hold back full collections while the block runs (nested and concurrent blocks share one hold)."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], YOUNG_THRESHOLD), _saved[1], HELD_BACK)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None


def tune_long_running_process() -> None:
    """Move everything that exists now (modules, classes, settings) out of the collector's scans,
    and collect the young generation less often.

    Call once in a process's entry point, after its imports and set-up: those objects live as long
    as the process, and each full collection would otherwise traverse all of them again.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
