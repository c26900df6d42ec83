"""Tasks with retries and time limits of their own, for tests on real worker processes.

Attempts are counted in files (one per key, under a directory the test names), so that they
hold across threads, forked children and worker processes alike.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from common.catalogue import task


def _count_attempt(counters: str, key: str) -> int:
    """Record one more attempt of `key`; how many there have been."""
    with (Path(counters) / key).open("a") as out:
        out.write("x")
        out.flush()
        return out.tell()


@task(name="rt.flaky", retries=3, retry_on=(OSError, TimeoutError), backoff=0.05, max_backoff=0.2)
def flaky(counters: str, key: str, failures: int) -> int:
    """Fail with OSError on the first `failures` attempts of `key`, then return the attempt number."""
    attempt = _count_attempt(counters, key)
    if attempt <= failures:
        raise OSError(f"attempt {attempt} of {key} failed")
    return attempt


@task(name="rt.picky", retries=3, retry_on=OSError, backoff=0.05)
def picky(counters: str, key: str) -> None:
    """Always fail with an error that its policy does not retry."""
    raise ValueError(f"attempt {_count_attempt(counters, key)} of {key}: not worth another try")


@task(name="rt.limited", timeout=1)
def limited(seconds: float, value: int) -> int:
    """Sleep (in a system call), then return `value`; stopped after 1 s, whatever the worker's limit."""
    time.sleep(seconds)
    return value


@task(name="rt.spinlimited", timeout=1)
def spin_limited(seconds: float) -> int:
    """Burn CPU without ever sleeping; stopped after 1 s."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


@task(name="rt.alimited", timeout=1)
async def async_limited(seconds: float, value: int) -> int:
    """rt.limited as a coroutine task (awaited on async slots)."""
    await asyncio.sleep(seconds)
    return value


# Limited like the tasks above, with room to spare: they must finish, and on a loaded machine the
# child process that runs a limited task on a thread slot can take a good part of a second to start.
@task(name="rt.roomy", timeout=120)
def roomy(value: int) -> int:
    """Return `value` at once, under a limit of its own."""
    return value


@task(name="rt.aroomy", timeout=120)
async def async_roomy(value: int) -> int:
    """rt.roomy as a coroutine task."""
    await asyncio.sleep(0)
    return value
