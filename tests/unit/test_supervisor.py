"""The supervisor reports a child's exit at once (so the worker can hand its chunk back) and replaces
children on a schedule that does not hold up watching the others."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from worker.supervisor import Supervisor


def _exits_with(code_by_index: dict[int, int]) -> Callable[[int], None]:
    def target(index: int) -> None:
        if index in code_by_index:
            os._exit(code_by_index[index])
        time.sleep(0.3)

    return target


def test_an_unclean_exit_is_reported_with_the_child_pid_and_code() -> None:
    exits: list[tuple[int, int, int]] = []
    supervisor = Supervisor(2, _exits_with({1: 3}), respawn=False, on_exit=lambda i, p, c, s: exits.append((i, p, c)))
    assert supervisor.run() == 3
    assert [(index, code) for index, _pid, code in exits] == [(1, 3)]  # the clean exit of child 0 is not reported
    assert exits[0][1] > 0


def test_a_failing_report_does_not_stop_the_supervisor() -> None:
    def broken(_index: int, _pid: int, _code: int, _stopping: bool) -> None:
        raise RuntimeError("Redis is away")

    assert Supervisor(1, _exits_with({0: 4}), respawn=False, on_exit=broken).run() == 4


def test_a_child_that_keeps_dying_is_reported_and_replaced_each_time() -> None:
    starts: list[float] = []
    exits: list[int] = []

    def target(index: int) -> None:
        os._exit(5)

    supervisor = Supervisor(1, target, respawn=True, on_exit=lambda i, p, c, s: exits.append(c))
    original = supervisor._start

    def counting_start(index: int) -> None:
        starts.append(time.monotonic())
        if len(starts) > 3:
            supervisor.signals_received = 1  # enough: stop replacing
            return
        original(index)

    supervisor._start = counting_start  # type: ignore[method-assign]
    supervisor.run()
    assert exits == [5, 5, 5]
    assert len(starts) == 4 and supervisor._failures[0] == 3  # the back-off grew with each failure
