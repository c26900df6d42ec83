"""Tasks the fault-injection tests run: slow enough to be caught mid-chunk, with results that name their task."""

from __future__ import annotations

import asyncio
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


@task(name="rt.mark")
def mark(path: str, seconds: float, value: int) -> int:
    """rt.nap that also appends `value` to the file at `path`, one line per run (O_APPEND keeps
    lines of concurrent processes whole), so a test can count how often each task really ran."""
    time.sleep(seconds)
    with open(path, "a") as out:
        out.write(f"{value}\n")
    return value
