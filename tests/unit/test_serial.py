"""The worker's serial hot loop gives, task for task, what the general `execute_task` path gives."""

from __future__ import annotations

import math
from typing import Any

from common import Catalogue, Settings, default_catalogue
from common.wire import ResultRow, TaskRow, TaskSpec, result_row
from tests.unit.test_remote_traceback import _failing_catalogue
from worker.execute import Watchdog, execute_task
from worker.serial import run_serial


class RowSink:
    """Stands in for ResultPublisher.add_rows: keeps what would have been written."""

    def __init__(self) -> None:
        self.rows: list[ResultRow] = []
        self.failed = 0
        self.tracebacks: dict[int, str] = {}
        self.calls = 0

    def add_rows(self, rows: list[ResultRow], failed: int, tracebacks: dict[int, str]) -> None:
        self.rows.extend(rows)
        self.failed += failed
        self.tracebacks.update(tracebacks)
        self.calls += 1


def _catalogue() -> Catalogue:
    catalogue = _failing_catalogue()  # ns.fails raises from a nested call; huge raises a long traceback

    @catalogue.register
    def silent(n: int) -> int:
        raise KeyError()  # an exception without a message: its type name is the message

    @catalogue.register(name="ns.echo")
    def echo(value: Any) -> Any:
        return value

    @catalogue.register
    def keyed(a: int, *, scale: int = 1) -> int:
        return a * scale

    for task in default_catalogue:
        catalogue.register(task.func, name=task.name)
    return catalogue


CASES: list[tuple[str, list[Any], dict[str, Any]]] = [
    ("add", [1, 2], {}),
    ("add", [1.5, -2], {}),
    ("add", ["1", 2], {}),  # wrong type: refused before running
    ("add", [1], {}),  # too few arguments
    ("add", [1, 2, 3], {}),  # too many
    ("add", [True, 1], {}),  # bool is not a number
    ("add", [10**400, 1], {}),  # over the operand limit, raised inside the task
    ("divide", [1, 0], {}),
    ("ns.fails", [3], {}),
    ("silent", [1], {}),
    ("ns.echo", ["x" * 10], {}),
    ("ns.echo", [[1, [2, {"a": None}]]], {}),
    ("ns.echo", [2**70], {}),  # a big integer result goes through the size check
    ("ns.echo", ["y" * 200_000], {}),  # over the result size limit
    ("keyed", [3], {"scale": 4}),  # keyword arguments take the general path
    ("keyed", [3], {"nope": 4}),
    ("no.such.task", [1], {}),
    ("fib", [30], {}),
]


def _rows() -> list[TaskRow]:
    return [[i, f"id-{i}" if i % 2 else None, name, args, kwargs] for i, (name, args, kwargs) in enumerate(CASES)]


def _without_elapsed(row: ResultRow) -> ResultRow:
    assert isinstance(row[7], float) and row[7] >= 0 and math.isfinite(row[7])
    return row[:7]


def test_serial_loop_matches_execute_task_row_for_row() -> None:
    catalogue, settings = _catalogue(), Settings.from_env({"DW_MAX_RESULT_BYTES": "100000"})
    sink = RowSink()
    with Watchdog(settings.task_timeout) as watchdog:
        run_serial(_rows(), catalogue, settings, "w1", watchdog, sink)  # type: ignore[arg-type]
        expected = [
            execute_task(TaskSpec(index, name, args, kwargs, task_id), catalogue, settings, "w1", watchdog)
            for index, task_id, name, args, kwargs in _rows()
        ]
    assert [_without_elapsed(row) for row in sink.rows] == [_without_elapsed(result_row(r)) for r in expected]
    assert sink.failed == sum(1 for r in expected if not r.ok) >= 8
    assert sink.tracebacks.keys() == {r.index for r in expected if r.traceback}
    failing = CASES.index(("ns.fails", [3], {}))
    text = sink.tracebacks[failing]
    assert "in inner" in text and "in fails" in text and "ValueError: bad n 3" in text
    assert "run_serial" not in text and "execute_task" not in text  # the worker's own frames are not shown


def test_serial_loop_flushes_by_count(monkeypatch: Any) -> None:
    monkeypatch.setattr("worker.serial.FLUSH_EVERY_RESULTS", 7)
    sink = RowSink()
    rows: list[TaskRow] = [[i, None, "add", [i, i], {}] for i in range(50)]
    with Watchdog(60) as watchdog:
        run_serial(rows, default_catalogue, Settings.from_env({}), "w1", watchdog, sink)  # type: ignore[arg-type]
    assert [row[6] for row in sink.rows] == [2 * i for i in range(50)]
    assert sink.calls == 50 // 7 + 1
