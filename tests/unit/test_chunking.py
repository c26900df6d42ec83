"""Grouping an executor's pending tasks into chunks (dispatcher.chunking): one route per chunk."""

from __future__ import annotations

from common.wire import TaskSpec
from dispatcher.chunking import Pending, group_pending, order_by_route


def _pending(*entries: tuple[bool, str]) -> Pending:
    index = 0
    pending: Pending = []
    for loose, names in entries:
        specs = [TaskSpec(index + i, name, [index + i]) for i, name in enumerate(names.split())]
        index += len(specs)
        pending.append((loose, specs))
    return pending


def test_submits_are_renumbered_by_route_within_their_run_and_map_chunks_are_kept() -> None:
    pending = _pending((True, "a.x"), (True, "add"), (True, "a.x"), (False, "b.y add"), (True, "fib"))
    moves = order_by_route(pending)
    assert moves == [(0, 0), (2, 1), (1, 2)]  # a.x first (its route came first), then the built-in one
    assert [[(s.index, s.task) for s in chunk] for chunk in group_pending(pending, 5)] == [
        [(0, "a.x"), (1, "a.x")],
        [(2, "add")],
        [(3, "b.y"), (4, "add")],  # a map() chunk goes as it is
        [(5, "fib")],
    ]


def test_a_run_of_one_route_is_left_as_it_is() -> None:
    pending = _pending((True, "add"), (True, "fib"), (True, "echo"))
    assert order_by_route(pending) == []
    assert [[s.index for s in chunk] for chunk in group_pending(pending, 2)] == [[0, 1], [2]]
