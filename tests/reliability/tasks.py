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


def _crash(how: str, value: int) -> None:
    if how == "segv":
        ctypes.string_at(0)  # a C extension gone wrong: reads address 0
    elif how == "exit":
        os._exit(value)  # ends the process at once, skipping every cleanup


@task(name="rt.poison")
def poison(value: int, how: str = "") -> int:
    """Return `value` after a millisecond; with `how` "segv" crash the process with a segmentation
    fault, with "exit" end it with exit code `value` (one task, so culprits share chunks with others)."""
    time.sleep(0.001)
    _crash(how, value)
    return value


@task(name="rt.apoison")
async def apoison(value: int, how: str = "") -> int:
    """rt.poison as a coroutine task, crashing on the event loop of async slots."""
    await asyncio.sleep(0.001)
    _crash(how, value)
    return value


@task(name="rt.mark")
def mark(path: str, seconds: float, value: int) -> int:
    """rt.nap that also appends `value` to the file at `path`, one line per run (O_APPEND keeps
    lines of concurrent processes whole), so a test can count how often each task really ran."""
    time.sleep(seconds)
    with open(path, "a") as out:
        out.write(f"{value}\n")
    return value
