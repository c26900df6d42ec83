"""Remote tracebacks: captured by the worker for task exceptions, bounded, carried by the wire format."""

from __future__ import annotations

import json
import pickle

import pytest

from common import Catalogue, Settings
from common.errors import RemoteTaskError, RemoteTraceback
from common.wire import TRACEBACK_FIELD, TaskResult, TaskSpec, decode_results, encode_results
from dispatcher.mapstream import remote_error
from worker.execute import MAX_TRACEBACK_CHARS, execute_task


def _failing_catalogue() -> Catalogue:
    catalogue = Catalogue()

    def inner(n: int) -> int:
        raise ValueError(f"bad n {n}")

    @catalogue.register(name="ns.fails")
    def fails(n: int) -> int:
        return inner(n)

    @catalogue.register
    def huge(n: int) -> int:
        def recurse(depth: int) -> int:
            if depth == 0:
                raise RuntimeError("x" * 50_000)
            return recurse(depth - 1)

        return recurse(n)

    return catalogue


def _run(name: str, *args: object) -> TaskResult:
    spec = TaskSpec(0, name, list(args), {}, None)
    return execute_task(spec, _failing_catalogue(), Settings.from_env({}), "w1")


def test_exception_in_task_function_carries_its_traceback() -> None:
    result = _run("ns.fails", 3)
    assert not result.ok
    assert (result.error_type, result.error_message) == ("ValueError", "bad n 3")
    assert result.traceback is not None
    assert "in inner" in result.traceback and "in fails" in result.traceback
    assert "ValueError: bad n 3" in result.traceback
    assert "execute_task" not in result.traceback  # the worker's own frame is not the user's business


def test_traceback_is_bounded() -> None:
    result = _run("huge", 200)
    assert result.traceback is not None
    assert len(result.traceback) <= MAX_TRACEBACK_CHARS + 100
    assert "characters cut" in result.traceback


@pytest.mark.parametrize("args", [("not an int",), (1, 2)])
def test_refusals_before_the_task_runs_have_no_traceback(args: tuple[object, ...]) -> None:
    result = _run("ns.fails", *args)
    assert result.error_type == "InvalidArguments"
    assert result.traceback is None
    assert _run("no.such.task").traceback is None


def _results() -> list[TaskResult]:
    return [
        TaskResult(0, "add", [1, 2], {}, None, True, 3, None, None, "w", 1.0),
        TaskResult(1, "ns.fails", [3], {}, "id-1", False, None, "ValueError", "bad n 3", "w", 2.0, "Traceback...\n"),
        TaskResult(2, "divide", [1, 0], {}, None, False, None, "ZeroDivisionError", "division by zero", "w", 0.5),
    ]


def test_wire_round_trip_keeps_tracebacks_of_failed_tasks_only() -> None:
    fields = encode_results("w", 4, _results())
    chunk, decoded = decode_results(fields)
    assert chunk == 4
    assert [r.traceback for r in decoded] == [None, "Traceback...\n", None]
    assert decoded[1].error_type == "ValueError" and decoded[1].id == "id-1"


def test_rows_keep_the_version_1_shape_so_older_readers_still_read_them() -> None:
    fields = encode_results("w", 0, _results())
    assert fields["v"] == "1"
    rows = json.loads(fields["r"])
    assert all(len(row) == 8 for row in rows)  # what a reader without traceback support unpacks
    assert json.loads(fields[TRACEBACK_FIELD]) == {"1": "Traceback...\n"}


def test_entries_without_the_field_or_with_a_broken_one_still_decode() -> None:
    fields = encode_results("w", 0, _results())
    old = {k: v for k, v in fields.items() if k != TRACEBACK_FIELD}
    assert [r.traceback for r in decode_results(old)[1]] == [None, None, None]
    broken = {**fields, TRACEBACK_FIELD: "{not json"}
    _chunk, decoded = decode_results({k.encode(): v.encode() for k, v in broken.items()})
    assert [r.error_type for r in decoded] == [None, "ValueError", "ZeroDivisionError"]
    assert all(r.traceback is None for r in decoded)


def test_successful_entries_carry_no_traceback_field() -> None:
    assert TRACEBACK_FIELD not in encode_results("w", 0, _results()[:1])


def test_remote_error_exposes_type_message_traceback_and_cause() -> None:
    error = remote_error(_results()[1])
    assert isinstance(error, RemoteTaskError)
    assert (error.remote_type, error.remote_message, error.task) == ("ValueError", "bad n 3", "ns.fails")
    assert error.remote_traceback == "Traceback...\n"
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "Traceback..." in str(error.__cause__)
    assert str(error) == "ValueError: bad n 3"
    assert remote_error(_results()[2]).__cause__ is None


def test_remote_error_survives_pickling_for_users_who_pass_it_between_processes() -> None:
    error = pickle.loads(pickle.dumps(remote_error(_results()[1])))
    assert (error.remote_type, error.remote_message) == ("ValueError", "bad n 3")
    assert error.remote_traceback == "Traceback...\n"
