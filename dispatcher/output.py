"""Render results (human lines or JSON lines, completion or input order) and a progress line."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Literal, TextIO

from common.cli import discard_writes
from common.errors import OutputFailed
from common.wire import TaskResult
from dispatcher.lease import BatchRecord
from dispatcher.watch import BatchWatcher

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ascii_dumps = json.JSONEncoder(separators=(",", ":")).encode

try:  # the `fast` extra: a JSON output line costs a fraction of the standard encoder's time
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None  # type: ignore[assignment]


_ARG_INT = 10**58
"""Integers below this in size print within an argument's 60 characters (sign included)."""
_VALUE_INT = 10**199
"""The same for a value's 200 characters."""


def task_label(result: TaskResult) -> str:
    """How a task is named to people: its user id, else its 1-based position in the batch."""
    return result.id if result.id is not None else str(result.index + 1)


def human_line(result: TaskResult) -> str:
    """One readable line per result."""
    call = " ".join([result.task, *map(_short, result.args)]) if result.task else "(unparsed line)"
    if result.kwargs:
        call += " " + " ".join(f"{k}={_short(v)}" for k, v in result.kwargs.items())
    where = f"(by {result.worker}, {result.elapsed_ms:.2f} ms)"
    if result.attempts > 1:
        where = f"after {result.attempts} attempts {where}"
    label = result.id if result.id is not None else str(result.index + 1)  # task_label, inlined: once per line
    if result.ok:
        value = result.value
        shown = str(value) if type(value) is int and -_VALUE_INT < value < _VALUE_INT else _short(value, 200)
        return f"Task {label}: {call} = {shown} {where}"
    return f"Task {label}: {call} FAILED {result.error_type}: {result.error_message} {where}"


def _short(value: object, limit: int = 60) -> str:
    kind = type(value)
    if kind is int and -_ARG_INT < value < _ARG_INT:  # type: ignore[operator]  # within the limit: as it is
        return str(value)
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
        missing = (
            f"how many input lines were never submitted is unknown: at least {record.read - record.sent} "
            "(read but not sent), plus the rest of the input it never read"
        )
    else:
        missing = "how many input lines were never submitted is unknown (the input was not read to its end)"
    return f"{why}; it holds the {record.sent} tasks sent before that, and {missing}"


def json_line(result: TaskResult) -> bytes:
    """One `--json` output line (with its line end), as UTF-8."""
    record = result.to_record()
    if _orjson is not None:
        try:
            return _orjson.dumps(record, option=_orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate: the standard encoder
            pass
    try:
        return (_dumps(record) + "\n").encode()
    except UnicodeEncodeError:  # a lone surrogate (read from a JSON escape): written escaped
        return (_ascii_dumps(record) + "\n").encode()


def human_bytes(result: TaskResult) -> bytes:
    """One human output line (with its line end), as UTF-8."""
    return (human_line(result) + "\n").encode("utf-8", "backslashreplace")


WRITE_BUFFER_BYTES = 1 << 18
"""The output buffer: lines are flushed to the file descriptor in writes this big."""


class ResultWriter:
    """Writes results as they come, or in input order with `ordered` (holding early arrivals).

    Lines go as bytes to the stream's buffer, flushed once per block of results (`write_many`):
    per-line writes through a text stream were the largest part of the CLI's CPU. Each line is
    written as soon as it is made (not joined into a block first): held lines kept the allocator
    growing and trimming its heap, a page fault every few lines."""

    def __init__(self, out: TextIO, as_json: bool, ordered: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.ordered = ordered
        self._next = 0
        self._held: dict[int, TaskResult] = {}
        self.died: list[str] = []
        """Labels of the tasks written as WorkerDied (they killed their worker process), for the summary."""
        self._format = json_line if as_json else human_bytes
        self._bytes_out: BinaryIO | Literal[False] | None = False  # False: not looked up yet
        self._failed = False

    def __call__(self, result: TaskResult) -> None:
        self.write_many((result,))

    def write_many(self, results: Iterable[TaskResult]) -> None:
        """Write a block of results (held back for input order with `ordered`), then flush it.

        A write that fails (a full disk, an I/O error) raises OutputFailed; a closed pipe raises
        BrokenPipeError as it is (the CLI edge ends quietly on it)."""
        with self._writing():
            self._write_many(results)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write into OutputFailed. After it nothing more is written, and the lines still
        buffered go nowhere (not into an error at exit): the stream's descriptor is pointed at
        /dev/null, as for a closed pipe."""
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed = True
            discard_writes(self.out)
            raise OutputFailed(f"cannot write the results: {exc.strerror or exc}") from exc

    def _write_many(self, results: Iterable[TaskResult]) -> None:
        results = self._in_order(results) if self.ordered else list(results)
        self.died.extend(task_label(r) for r in results if not r.ok and r.error_type == "WorkerDied")
        fmt = self._format
        buffer = self._buffer()
        if buffer is None:  # a text-only stream (StringIO)
            self.out.write(b"".join([fmt(result) for result in results]).decode())
            return
        self.out.flush()  # whatever was written as text goes first
        write = buffer.write
        for result in results:
            write(fmt(result))
        buffer.flush()

    def _buffer(self) -> BinaryIO | None:
        """Where lines go: a large buffer of our own on the stream's file descriptor (a write system
        call per few thousand lines, not per 8 KiB), else the stream's bytes buffer, else None."""
        if self._bytes_out is False:
            self._bytes_out = None
            try:
                fd = self.out.fileno()
            except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
                self._bytes_out = getattr(self.out, "buffer", None)
            else:
                self._bytes_out = open(fd, "wb", buffering=WRITE_BUFFER_BYTES, closefd=False)  # noqa: SIM115
        return self._bytes_out

    def _in_order(self, results: Iterable[TaskResult]) -> list[TaskResult]:
        held = self._held
        for result in results:
            held[result.index] = result
        ready: list[TaskResult] = []
        while self._next in held:
            ready.append(held.pop(self._next))
            self._next += 1
        return ready

    def close(self) -> None:
        """Write whatever is still held (only after an incomplete wait), in index order."""
        if self._failed:
            return
        ordered, self.ordered = self.ordered, False
        self.write_many([self._held.pop(index) for index in sorted(self._held)])
        self.ordered = ordered
        with self._writing():
            self.out.flush()


def died_summary(labels: list[str], shown: int = 10) -> str:
    """The summary line naming the tasks that killed their worker process (WorkerDied)."""
    named = ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more" if len(labels) > shown else "")
    return (
        f"{len(labels)} task(s) killed their worker process and failed alone (WorkerDied): {named}; "
        "the other tasks of their chunks ran"
    )


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
