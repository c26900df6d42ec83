"""Run one task from the catalogue, turning every problem into that task's error result."""

from __future__ import annotations

import math
import signal
import threading
import time
import traceback
from types import FrameType, TracebackType

from common.catalogue import Catalogue
from common.errors import LimitExceeded, TaskTimeout
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, encode_value

MAX_TRACEBACK_CHARS = 8000
"""Longest remote traceback text sent with a task's error (its tail is kept: the raising frames)."""


class Watchdog:
    """Stops a task that overruns its time limit, with one repeating timer per chunk.

    A timer per task would cost four system calls per task; a repeating SIGALRM that checks the
    running task's start time costs nothing per task and stops an overrun within limit/4 (at most 1 s).
    SIGALRM works only in the main thread; elsewhere (thread slots) the watchdog cannot preempt.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.task_started: float | None = None
        self._armed = False
        self._previous: object = None

    def __enter__(self) -> Watchdog:
        if threading.current_thread() is threading.main_thread():
            period = min(1.0, self.limit / 4)
            self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, period, period)
            self._armed = True
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]
            self._armed = False

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        started = self.task_started
        if started is not None and time.perf_counter() - started > self.limit:
            self.task_started = None
            raise TaskTimeout(f"task ran longer than {self.limit:g} s and was stopped")


def execute_task(
    spec: TaskSpec, catalogue: Catalogue, settings: Settings, worker: str, watchdog: Watchdog | None = None
) -> TaskResult:
    """Run one task; never raises for anything the task or its input did wrong."""
    started = time.perf_counter()
    task_traceback: str | None = None
    try:
        definition = catalogue.get(spec.task)
        definition.check_arguments(spec.args, spec.kwargs)
        if watchdog is not None:
            watchdog.task_started = started
        try:
            value = definition.func(*spec.args, **spec.kwargs)
        except Exception as exc:
            task_traceback = format_task_traceback(exc)
            raise
        finally:
            if watchdog is not None:
                watchdog.task_started = None
        check_result_size(value, settings.max_result_bytes)
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        message = str(exc) or type(exc).__name__
        return TaskResult(
            spec.index, spec.task, spec.args, spec.kwargs, spec.id, False, None,
            type(exc).__name__, message, worker, elapsed, task_traceback,
        )  # fmt: skip
    elapsed = (time.perf_counter() - started) * 1000
    return TaskResult(spec.index, spec.task, spec.args, spec.kwargs, spec.id, True, value, None, None, worker, elapsed)


def format_task_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """The traceback of an exception raised inside a task function, without the frame of the worker
    function that called the task (call this in that function's `except` block)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > limit:
        text = f"... ({len(text) - limit} characters cut)\n" + text[-limit:]
    return text


def check_result_size(value: object, limit: int) -> None:
    """Raise unless the value can travel as JSON within `limit` bytes (cheap for small scalars)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int) and value.bit_length() < 3 * min(limit, 4000):
        return
    if isinstance(value, float) and math.isfinite(value):
        return
    if isinstance(value, str) and len(value) * 6 <= limit:
        return
    try:
        encoded = encode_value(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"result cannot be sent as JSON: {exc}") from None
    if len(encoded.encode()) > limit:
        raise LimitExceeded(f"result is {len(encoded)} bytes, over the {limit}-byte limit")
