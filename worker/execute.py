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
    """Stops a task that overruns its time limit, with one repeating timer per worker process.

    A timer per task would cost four system calls per task; a repeating SIGALRM that checks the
    running task's start time costs nothing per task and stops an overrun within limit/4 (at most 1 s).
    The timer stays armed between chunks (the handler does nothing while no chunk runs): arming and
    disarming it per chunk was four system calls, ~7 % of a worker's CPU at chunk size 1; entering a
    chunk now costs one (getitimer: re-arm if something else took the timer meanwhile).
    SIGALRM works only in the main thread; elsewhere (thread slots) the watchdog cannot preempt.
    """

    _active: Watchdog | None = None
    """The watchdog of the chunk running in the main thread, if any (what the alarm checks)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.task_started: float | None = None
        self._entered = False

    def __enter__(self) -> Watchdog:
        if threading.current_thread() is threading.main_thread():
            period = min(1.0, self.limit / 4)
            # A timer still repeating at our period is ours (whoever takes SIGALRM sets its own timer);
            # signal.getsignal would cost more than the rest of this method (it builds an enum).
            if signal.getitimer(signal.ITIMER_REAL)[1] != period:
                signal.signal(signal.SIGALRM, _on_alarm)
                signal.setitimer(signal.ITIMER_REAL, period, period)
            Watchdog._active = self
            self._entered = True
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._entered:
            Watchdog._active = None
            self._entered = False

    def check(self) -> None:
        """Raise TaskTimeout in the running task if it has overrun its limit."""
        started = self.task_started
        if started is not None and time.perf_counter() - started > self.limit:
            self.task_started = None
            raise TaskTimeout(f"task ran longer than {self.limit:g} s and was stopped")


def disarm_watchdog() -> None:
    """Stop the process's watchdog timer (for a process that stops running chunks)."""
    if signal.getsignal(signal.SIGALRM) is _on_alarm:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    Watchdog._active = None


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    active = Watchdog._active
    if active is not None:
        active.check()


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
