"""Human and JSON rendering, and input-order output."""

from __future__ import annotations

import io
import json
from pathlib import Path

from common.wire import TaskResult
from dispatcher.output import ResultWriter, died_summary, human_line


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
        "index": 2,
        "id": "mine",
        "task": "divide",
        "args": [1, 0],
        "ok": False,
        "result": None,
        "error": {"type": "ZeroDivisionError", "message": "division by zero"},
        "worker": "w1",
        "elapsed_ms": 0.0,
    }


def test_ordered_output_holds_early_arrivals() -> None:
    out = io.StringIO()
    writer = ResultWriter(out, as_json=True, ordered=True)
    for index in (2, 0, 3, 1):
        writer(result(index))
    writer.close()
    assert [json.loads(line)["index"] for line in out.getvalue().splitlines()] == [0, 1, 2, 3]


def test_the_writer_names_the_tasks_that_killed_their_worker_for_the_summary() -> None:
    writer = ResultWriter(io.StringIO(), as_json=False, ordered=False)
    died = TaskResult(300, "rt.segv", [300], {}, None, False, None, "WorkerDied", "the worker process died", "w1")
    for each in (result(0), result(1, ok=False), died):
        writer(each)
    assert writer.died == ["301"]
    assert died_summary(writer.died) == (
        "1 task(s) killed their worker process and failed alone (WorkerDied): 301; the other tasks of their chunks ran"
    )
    many = died_summary([str(i) for i in range(12)], shown=2)
    assert many.startswith("12 task(s) killed") and ": 0, 1 and 10 more;" in many


def test_a_json_line_is_the_record_of_the_result() -> None:
    """A JSON line is the result's record, key order included, for both of to_record's shapes."""
    from dispatcher.output import json_line

    for item in (result(3), result(4, ok=False), TaskResult(5, "f", [], {"k": 1}, "x", True, [1], worker="w")):
        assert json_line(item).decode() == json.dumps(item.to_record(), separators=(",", ":")) + "\n"


def test_lines_go_to_the_file_descriptor_after_text_written_before(tmp_path: Path) -> None:
    """With a real file, lines go through the writer's own buffer on its descriptor: whatever was
    written to the text stream first comes first, and every block is flushed when written."""
    path = tmp_path / "out.txt"
    with path.open("w", encoding="utf-8") as out:
        out.write("before\n")
        writer = ResultWriter(out, as_json=False, ordered=False)
        writer.write_many([result(0), result(1)])
        assert path.read_text().splitlines()[1:] == [human_line(result(0)), human_line(result(1))]
        writer.write_many([result(2, ok=False)])
        writer.close()
    assert path.read_text().splitlines() == ["before", *(human_line(result(i, i != 2)) for i in range(3))]


def test_a_lone_surrogate_is_written_escaped_not_raised() -> None:
    out = io.StringIO()
    writer = ResultWriter(out, as_json=True, ordered=False)
    writer(TaskResult(0, "echo", ["\ud800"], {}, None, True, "\ud800", worker="w"))
    writer.close()
    assert json.loads(out.getvalue())["result"] == "\ud800"
