"""Human and JSON rendering, and input-order output."""

from __future__ import annotations

import io
import json

from common.wire import TaskResult
from dispatcher.output import ResultWriter, human_line


def result(index: int, ok: bool = True) -> TaskResult:
    if ok:
        return TaskResult(index, "add", [index, 1], {}, None, True, index + 1, worker="w0", elapsed_ms=0.25)
    return TaskResult(index, "divide", [1, 0], {}, "mine", False, None, "ZeroDivisionError", "division by zero", "w1")


def test_human_lines() -> None:
    assert human_line(result(0)) == "Task 1: add 0 1 = 1 (by w0, 0.25 ms)"
    assert human_line(result(4, ok=False)) == (
        "Task mine: divide 1 0 FAILED ZeroDivisionError: division by zero (by w1, 0.00 ms)"
    )


def test_json_lines_carry_every_documented_field() -> None:
    out = io.StringIO()
    writer = ResultWriter(out, as_json=True, ordered=False)
    writer(result(2, ok=False))
    writer.close()
    record = json.loads(out.getvalue())
    assert record == {
        "index": 2, "id": "mine", "task": "divide", "args": [1, 0], "ok": False, "result": None,
        "error": {"type": "ZeroDivisionError", "message": "division by zero"}, "worker": "w1", "elapsed_ms": 0.0,
    }  # fmt: skip


def test_ordered_output_holds_early_arrivals() -> None:
    out = io.StringIO()
    writer = ResultWriter(out, as_json=True, ordered=True)
    for index in (2, 0, 3, 1):
        writer(result(index))
    writer.close()
    assert [json.loads(line)["index"] for line in out.getvalue().splitlines()] == [0, 1, 2, 3]


def test_a_json_line_is_the_record_of_the_result() -> None:
    """The inline shape of an ok result's line is to_record's, key order included."""
    from dispatcher.output import json_line

    for item in (result(3), result(4, ok=False), TaskResult(5, "f", [], {"k": 1}, "x", True, [1], worker="w")):
        assert json_line(item).decode() == json.dumps(item.to_record(), separators=(",", ":")) + "\n"
