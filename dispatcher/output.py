"""Render results (human lines or JSON lines, completion or input order) and a progress line."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from common.wire import TaskResult
from dispatcher.lease import BatchRecord
from dispatcher.watch import BatchWatcher

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def task_label(result: TaskResult) -> str:
    """How a task is named to people: its user id, else its 1-based position in the batch."""
    return result.id if result.id is not None else str(result.index + 1)


def human_line(result: TaskResult) -> str:
    """One readable line per result."""
    call = " ".join([result.task, *(_short(a) for a in result.args)]) if result.task else "(unparsed line)"
    if result.kwargs:
        call += " " + " ".join(f"{k}={_short(v)}" for k, v in result.kwargs.items())
    where = f"(by {result.worker}, {result.elapsed_ms:.2f} ms)"
    if result.attempts > 1:
        where = f"after {result.attempts} attempts {where}"
    if result.ok:
        return f"Task {task_label(result)}: {call} = {_short(result.value, 200)} {where}"
    return f"Task {task_label(result)}: {call} FAILED {result.error_type}: {result.error_message} {where}"


def _short(value: object, limit: int = 60) -> str:
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
    elif kind is int:
        text = str(value)  # the digits json.dumps writes, without the encoder's per-call setup
    else:
        text = _dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def incomplete_summary(record: BatchRecord) -> str:
    """What became of a batch whose input was not all submitted, for its summary on stderr."""
    if record.state == "abandoned":
        why = "abandoned: the dispatcher submitting it stopped (killed, or cut off) before the end of its input"
    else:
        why = f"aborted while submitting ({record.reason or 'no reason recorded'})"
    if record.unsubmitted is not None:
        missing = f"{record.unsubmitted} input lines were never submitted"
    elif record.read is not None and record.read > record.sent:
        missing = (f"how many input lines were never submitted is unknown: at least {record.read - record.sent} "
                   "(read but not sent), plus the rest of the input it never read")  # fmt: skip
    else:
        missing = "how many input lines were never submitted is unknown (the input was not read to its end)"
    return f"{why}; it holds the {record.sent} tasks sent before that, and {missing}"


class ResultWriter:
    """Writes each result as it comes, or in input order with `ordered` (holding early arrivals)."""

    def __init__(self, out: TextIO, as_json: bool, ordered: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.ordered = ordered
        self._next = 0
        self._held: dict[int, TaskResult] = {}
        self.died: list[str] = []
        """Labels of the tasks written as WorkerDied (they killed their worker process), for the summary."""

    def __call__(self, result: TaskResult) -> None:
        if not self.ordered:
            self._write(result)
            return
        self._held[result.index] = result
        while self._next in self._held:
            self._write(self._held.pop(self._next))
            self._next += 1

    def close(self) -> None:
        """Write whatever is still held (only after an incomplete wait), in index order."""
        for index in sorted(self._held):
            self._write(self._held.pop(index))
        self.out.flush()

    def _write(self, result: TaskResult) -> None:
        if not result.ok and result.error_type == "WorkerDied":
            self.died.append(task_label(result))
        line = _dumps(result.to_record()) if self.as_json else human_line(result)
        self.out.write(line + "\n")


def died_summary(labels: list[str], shown: int = 10) -> str:
    """The summary line naming the tasks that killed their worker process (WorkerDied)."""
    named = ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more" if len(labels) > shown else "")
    return (f"{len(labels)} task(s) killed their worker process and failed alone (WorkerDied): {named}; "
            "the other tasks of their chunks ran")  # fmt: skip


class ProgressLine:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, watcher: BatchWatcher) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.1:
            return
        self._last_draw = now
        total = watcher.total
        rate = watcher.resolved / max(now - self.started, 1e-6)
        if total:
            filled = int(30 * watcher.resolved / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {watcher.resolved}/{total}"
        else:
            bar = f"{watcher.resolved} done (still submitting)"
        self.stream.write(f"\r{bar}  {watcher.failed} failed  {rate:,.0f} tasks/s ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the progress line so later output starts on a clean line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
