"""Coroutine tasks, as a user would write them, served by `worker --tasks tests.asynctasks`."""

from __future__ import annotations

import asyncio
import os
import threading

from common import task

_running = 0


@task(name="aio.where")
async def where(seconds: float) -> list[int]:
    """Sleep, then say which process and thread ran the task and how many of these ran at once."""
    global _running
    _running += 1
    try:
        await asyncio.sleep(seconds)
        return [os.getpid(), threading.get_ident(), _running]
    finally:
        _running -= 1


@task(name="aio.explode")
async def explode(message: str) -> None:
    """Fails from a nested call after an await."""
    await asyncio.sleep(0)
    _deeper(message)


def _deeper(message: str) -> None:
    raise RuntimeError(message)


@task(name="aio.forever")
async def forever() -> None:
    """Never ends by itself: only the per-task time limit stops it."""
    await asyncio.Event().wait()
