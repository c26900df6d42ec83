"""Coroutine tasks outside async slots (common.coroutines): run to their end on a loop kept per thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from common.coroutines import run_to_completion


async def _which_loop(value: int) -> tuple[int, asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return value, asyncio.get_running_loop()


def test_a_coroutine_runs_to_its_end_and_keeps_its_name() -> None:
    run = run_to_completion(_which_loop)
    value, _loop = run(7)
    assert value == 7
    assert run.__name__ == "_which_loop"


def test_one_loop_per_thread_reused_across_calls() -> None:
    run = run_to_completion(_which_loop)
    first, second = run(1)[1], run(2)[1]
    assert first is second
    other: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: other.append(run(3)[1]))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_a_coroutine_stopped_from_outside_is_ended_at_once_not_in_a_later_call() -> None:
    ended: list[str] = []

    def stop() -> None:
        raise SystemExit(1)  # as the watchdog's alarm or a cold shutdown, from outside the coroutine

    async def slow() -> None:
        asyncio.get_running_loop().call_soon(stop)
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("ended")

    with pytest.raises(SystemExit):
        run_to_completion(slow)()
    assert ended == ["ended"]
    assert run_to_completion(_which_loop)(1)[0] == 1  # the thread's loop still serves the next task
