"""How a coroutine task runs outside async slots: to its end, on an event loop kept per thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any


class _ThreadLoop:
    """An event loop owned by one thread, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        self.loop.close()


_loops = threading.local()


def run_to_completion(coroutine: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A plain function that runs `coroutine` to its end, on an event loop kept per thread (a new loop
    per call would cost far more than a small task: docs/performance.md)."""

    @functools.wraps(coroutine)
    def run(*args: Any, **kwargs: Any) -> Any:
        owner: _ThreadLoop | None = getattr(_loops, "owner", None)
        if owner is None:
            owner = _loops.owner = _ThreadLoop()
        loop = owner.loop
        future = asyncio.ensure_future(coroutine(*args, **kwargs), loop=loop)
        try:
            return loop.run_until_complete(future)
        except BaseException:
            # Stopped from outside (the per-task watchdog's alarm, a shutdown): end the coroutine too,
            # so it never resumes inside a later task.
            if not future.done():
                future.cancel()
                loop.run_until_complete(asyncio.wait([future]))
            raise

    return run
