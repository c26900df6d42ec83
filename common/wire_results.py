"""The wire format of task results: one result-stream entry per published group of results."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from common import fastjson
from common.errors import PayloadError
from common.fastjson import LEGACY_RESULT_MARK, ORJSON_MARK
from common.wire_chunks import WIRE_VERSION, JSONValue, encode_value

TRACEBACK_FIELD = "t"
"""Optional result-entry field: JSON object {task index: remote traceback text} for failed tasks."""
ATTEMPTS_FIELD = "a"
"""Optional result-entry field: JSON object {task index: attempts} for tasks that ran more than once."""


@dataclass(slots=True)
class TaskResult:
    """The outcome of one task: a value, or an error type and message."""

    index: int
    task: str
    args: list[JSONValue]
    kwargs: dict[str, JSONValue]
    id: str | None
    ok: bool
    value: JSONValue = None
    error_type: str | None = None
    error_message: str | None = None
    worker: str | None = None
    elapsed_ms: float = 0.0
    traceback: str | None = None
    """The task's remote traceback text, for an exception raised inside the task function."""
    attempts: int = 1
    """How many times the task ran (more than once when its retry policy tried it again)."""

    def to_record(self) -> dict[str, JSONValue]:
        """The public JSON shape of a result (one line of `--json` output)."""
        if self.ok and not self.kwargs and self.attempts == 1:
            # The usual shape in one literal (built once per result); keep both shapes in step.
            return {
                "index": self.index,
                "id": self.id,
                "task": self.task,
                "args": self.args,
                "ok": True,
                "result": self.value,
                "error": None,
                "worker": self.worker,
                "elapsed_ms": round(self.elapsed_ms, 3),
            }
        record: dict[str, JSONValue] = {
            "index": self.index,
            "id": self.id,
            "task": self.task,
            "args": self.args,
        }
        if self.kwargs:
            record["kwargs"] = self.kwargs
        record["ok"] = self.ok
        record["result"] = self.value if self.ok else None
        record["error"] = None if self.ok else {"type": self.error_type, "message": self.error_message}
        record["worker"] = self.worker
        record["elapsed_ms"] = round(self.elapsed_ms, 3)
        if self.attempts > 1:
            record["attempts"] = self.attempts
        return record


ResultRow = list[Any]
"""A result as it travels: [index, id, task, args, kwargs, 1, value, ms] or [..., 0, [type, message], ms]."""


def result_row(r: TaskResult) -> ResultRow:
    """The wire row of one result."""
    if r.ok:
        return [r.index, r.id, r.task, r.args, r.kwargs, 1, r.value, round(r.elapsed_ms, 3)]
    return [r.index, r.id, r.task, r.args, r.kwargs, 0, [r.error_type, r.error_message], round(r.elapsed_ms, 3)]


def encode_results(worker: str, chunk: int, results: Iterable[TaskResult]) -> dict[str, str]:
    """The fields of one result-stream entry: a group of task results from one chunk."""
    results = results if isinstance(results, list) else list(results)
    tracebacks = {r.index: r.traceback for r in results if r.traceback and not r.ok}
    attempts = {r.index: r.attempts for r in results if r.attempts > 1}
    return encode_result_rows(worker, chunk, [result_row(r) for r in results], tracebacks, attempts)


def encode_result_rows(
    worker: str,
    chunk: int,
    rows: list[ResultRow],
    tracebacks: Mapping[int, str],
    attempts: Mapping[int, int] | None = None,
) -> dict[str, str]:
    """The fields of one result-stream entry from rows already in wire form (see result_row).

    Error tracebacks travel in the optional field `t`: a JSON object from task index to text;
    the attempts of tasks that ran more than once in the optional field `a`, the same way.
    """
    encoded, small_numbers = _encode_rows(rows)
    fields = {"v": str(WIRE_VERSION), "w": worker, "c": str(chunk), "r": encoded}
    if small_numbers:
        fields[ORJSON_MARK] = "1"  # orjson wrote the rows: readers may read them with it (common.fastjson)
    if tracebacks:
        # A separate optional field, not a 9th row element: readers that predate it unpack rows of
        # exactly 8 and ignore fields they do not know, so entries stay readable by every version 1.
        fields[TRACEBACK_FIELD] = encode_value({str(index): text for index, text in tracebacks.items()})
    if attempts:  # the same reasoning: absent for tasks that ran once, which is nearly all of them
        fields[ATTEMPTS_FIELD] = encode_value({str(index): count for index, count in attempts.items()})
    return fields


def _encode_rows(rows: list[list[JSONValue]]) -> tuple[str, bool]:
    """Compact JSON of result rows, and whether orjson wrote it (so no integer is beyond 64 bits).
    A non-finite float (a NaN argument echoed back) becomes null instead of failing the chunk."""
    marked = fastjson.dumps(rows)
    if marked is not None:
        return marked.decode(), True
    try:  # no orjson, or an integer beyond 64 bits: plain json carries it exactly
        return encode_value(rows), False
    except ValueError:
        return encode_value(_finite(rows)), False


def _finite(value: JSONValue) -> JSONValue:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def decode_results(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> tuple[int, list[TaskResult]]:
    """Decode one result-stream entry into (chunk number, results); PayloadError if it is not ours."""
    get = _field_getter(fields)
    if get("v") != str(WIRE_VERSION):
        raise PayloadError(f"unsupported result wire version {get('v')!r}")
    worker, chunk_text = get("w"), get("c")
    rows_raw = fields.get(b"r") if b"r" in fields else fields.get("r")  # type: ignore[call-overload]
    try:
        chunk = int(chunk_text or "")
        marked = get(ORJSON_MARK) == "1" or get(LEGACY_RESULT_MARK) == "1"
        rows = fastjson.loads(rows_raw or b"", marked)
    except ValueError as exc:
        raise PayloadError(f"malformed result entry: {exc}") from None
    if not isinstance(rows, list):
        raise PayloadError("malformed result entry: rows must be a list")
    tracebacks = _decode_tracebacks(get(TRACEBACK_FIELD))
    attempts = _decode_attempts(get(ATTEMPTS_FIELD))
    results: list[TaskResult] = []
    append = results.append
    for row in rows:  # exact type checks: this runs once per result of every batch
        if type(row) is not list or len(row) != 8:
            raise PayloadError("malformed result entry: a row must have 8 fields")
        index, task_id, task, args, kwargs, ok, value, elapsed = row
        if (
            type(index) is not int
            or type(task) is not str
            or type(args) is not list
            or type(kwargs) is not dict
            or (task_id is not None and type(task_id) is not str)
            or (type(elapsed) is not float and type(elapsed) is not int)
        ):
            raise PayloadError(f"malformed result entry: a field of the row of task {index!r} has the wrong type")
        if ok:
            append(TaskResult(index, task, args, kwargs, task_id, True, value, None, None, worker, elapsed))
        elif type(value) is list and len(value) == 2 and type(value[0]) is str and type(value[1]) is str:
            remote_tb = tracebacks.get(index) if tracebacks else None
            error_type, message = value
            append(
                TaskResult(
                    index, task, args, kwargs, task_id, False, None, error_type, message, worker, elapsed, remote_tb
                )
            )
        else:
            raise PayloadError(f"malformed result entry: error of row {index} is not [type, message]")
    if attempts:
        for result in results:
            result.attempts = attempts.get(result.index, 1)
    return chunk, results


def _decode_attempts(text: str | None) -> dict[int, int] | None:
    """The optional attempts field; an unreadable one costs the counts, never the results."""
    if not text:
        return None
    try:
        raw = json.loads(text)
        return {int(k): v for k, v in raw.items() if type(v) is int and v > 0}
    except (ValueError, AttributeError, TypeError):
        return None


def _decode_tracebacks(text: str | None) -> dict[int, str] | None:
    """The optional traceback field; an unreadable one costs the tracebacks, never the results."""
    if not text:
        return None
    try:
        raw = json.loads(text)
        return {int(k): v for k, v in raw.items() if isinstance(v, str)}
    except (ValueError, AttributeError, TypeError):
        return None


def _field_getter(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> Any:
    def get(name: str) -> str | None:
        raw = fields.get(name) if name in fields else fields.get(name.encode())  # type: ignore[call-overload]
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    return get
