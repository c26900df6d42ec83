"""Tasks the fault-injection tests run: slow enough to be caught mid-chunk, with results that name their task."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time

from common.catalogue import task


@task(name="rt.nap")
def nap(seconds: float, value: int) -> int:
    """Sleep, then return `value` (the task's index, so the output can be checked by index)."""
    time.sleep(seconds)
    return value


@task(name="rt.spin")
def spin(seconds: float) -> int:
    """Burn CPU for `seconds` without ever sleeping (a runaway task that only a preemptive stop can end)."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


@task(name="rt.anap")
async def anap(seconds: float, value: int) -> int:
    """rt.nap as a coroutine task (awaited on async slots)."""
    await asyncio.sleep(seconds)
    return value


@task(name="rt.segv")
def segv(value: int) -> int:
    """Crash the process with a segmentation fault (a C extension gone wrong: reads address 0)."""
    ctypes.string_at(0)
    return value


@task(name="rt.exit")
def exit_now(code: int) -> int:
    """End the process at once with exit code `code`, skipping every cleanup (os._exit)."""
    os._exit(code)


@task(name="rt.asegv")
async def asegv(value: int) -> int:
    """rt.segv as a coroutine task, crashing on the event loop of async slots."""
    await asyncio.sleep(0)
    ctypes.string_at(0)
    return value


@task(name="rt.aexit")
async def aexit(code: int) -> int:
    """rt.exit as a coroutine task."""
    await asyncio.sleep(0)
    os._exit(code)
