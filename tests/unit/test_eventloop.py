"""The async slots' loop (worker.eventloop): the selector waits below whole milliseconds, then polls."""

from __future__ import annotations

import selectors
from typing import Any

import pytest

from worker import eventloop
from worker.eventloop import PreciseSelector, new_event_loop


def test_the_selector_waits_whole_milliseconds_below_the_timeout_then_sleeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float | None] = []
    slept: list[float] = []

    def base_select(self: Any, timeout: float | None = None) -> list[Any]:
        waits.append(timeout)
        return []

    monkeypatch.setattr(selectors.DefaultSelector, "select", base_select)
    monkeypatch.setattr(eventloop.time, "sleep", slept.append)
    with PreciseSelector() as selector:
        assert selector.select(0.0025) == []
    assert waits[0] is not None and 0.0019 < waits[0] < 0.002  # below 2 ms: the base class rounds up
    assert waits[1:] == [0]  # then a poll, after sleeping what was left
    assert len(slept) == 1 and 0 < slept[0] <= 0.0025


def test_a_loop_runs_coroutines_with_the_precise_selector() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop._selector, PreciseSelector)  # type: ignore[attr-defined]
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


async def _answer() -> int:
    return 42
