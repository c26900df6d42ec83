"""Run one task from the catalogue, turning every problem into that task's error result."""

from __future__ import annotations

import math
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from common.catalogue import Catalogue, TaskDefinition
from common.errors import LimitExceeded, TaskTimeout
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, encode_value
from worker.blocking import ChildFailed, call_in_child

MAX_TRACEBACK_CHARS = 8000
"""Longest remote traceback text sent with a task's error (its tail is kept: the raising frames)."""


class Watchdog:
    """Stops a task that overruns its time limit, with one repeating timer per worker process.

    A timer per task would cost four system calls per task; a repeating SIGALRM that checks the
    running task's start time costs nothing per task and stops an overrun within limit/4 (at most 1 s).
    The timer stays armed between chunks (the handler does nothing while no chunk runs): arming and
    disarming it per chunk was four system calls, a visible share of a worker's CPU at chunk size 1;
    entering a chunk now costs one (getitimer: re-arm if something else took the timer meanwhile).
    A task with a limit of its own (`@task(timeout=S)`) sets `task_limit` while it runs, and
    shortens the period when its limit needs a finer check.
    SIGALRM works only in the main thread; elsewhere (thread slots) the watchdog cannot preempt.
    """

    _active: Watchdog | None = None
    """The watchdog of the chunk running in the main thread, if any (what the alarm checks)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.task_limit = limit
        """The running task's limit: the worker's, or the task's own while such a task runs."""
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

    def limit_task(self, limit: float | None) -> None:
        """The next task's own limit (None: the worker's); a short one checks more often until the
        next chunk (whose entry restores the period)."""
        self.task_limit = self.limit if limit is None else limit
        if limit is not None and self._entered:
            period = min(1.0, limit / 4)
            if signal.getitimer(signal.ITIMER_REAL)[1] > period:
                signal.setitimer(signal.ITIMER_REAL, period, period)

    def check(self) -> None:
        """Raise TaskTimeout in the running task if it has overrun its limit."""
        started = self.task_started
        if started is not None and time.perf_counter() - started > self.task_limit:
            self.task_started = None
            raise TaskTimeout(f"task ran longer than {self.task_limit:g} s and was stopped")


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


@dataclass(slots=True)
class PendingRetry(TaskResult):
    """A failed attempt that its task's retry policy tries again after `delay` seconds: the caller
    schedules attempt `attempts + 1` (see worker.retrying) instead of publishing this result."""

    delay: float = 0.0


def failed_attempt(
    spec: TaskSpec,
    error_type: str,
    message: str,
    worker: str,
    elapsed_ms: float,
    task_traceback: str | None,
    attempt: int,
    retry_delay: float | None = None,
) -> TaskResult:
    """The failed result of one attempt of `spec`; a PendingRetry when its retry policy gives it a
    `retry_delay` (the attempt is tried again instead of published)."""
    fields = (spec.index, spec.task, spec.args, spec.kwargs, spec.id, False, None, error_type, message)
    if retry_delay is not None:
        return PendingRetry(*fields, worker, elapsed_ms, task_traceback, attempt, retry_delay)
    return TaskResult(*fields, worker, elapsed_ms, task_traceback, attempt)


def execute_task(
    spec: TaskSpec,
    catalogue: Catalogue,
    settings: Settings,
    worker: str,
    watchdog: Watchdog | None = None,
    attempt: int = 1,
    previous_delay: float = 0.0,
) -> TaskResult:
    """Run attempt `attempt` of one task; never raises for anything the task or its input did wrong.

    Without a watchdog (a thread slot), a task with a time limit of its own runs in a child process
    that can be stopped (worker.blocking). A failure its retry policy retries is a PendingRetry.
    """
    started = time.perf_counter()
    task_traceback: str | None = None
    definition: TaskDefinition | None = None
    in_task = in_child = False
    try:
        definition = catalogue.get(spec.task)
        definition.check_arguments(spec.args, spec.kwargs)
        in_task = True
        if watchdog is None and definition.timeout is not None:
            in_child = True
            value = call_in_child(definition, spec.args, spec.kwargs, format_task_traceback)
        else:
            value = _call(definition, spec, watchdog, started)
        in_task = False
        check_result_size(value, settings.max_result_bytes)
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        error_type, message = type(exc).__name__, str(exc) or type(exc).__name__
        if isinstance(exc, ChildFailed):
            error_type, message, task_traceback = exc.error_type, exc.message, exc.traceback
        elif in_task and not in_child:
            task_traceback = format_task_traceback(exc, skip=2)  # execute_task's frame and _call's
        policy = definition.retry if definition is not None and in_task else None
        retryable = (
            exc.retryable if isinstance(exc, ChildFailed) else policy is not None and policy.retries_error(exc, attempt)
        )
        if policy is not None and attempt <= policy.retries and retryable:
            delay = policy.delay(attempt, previous_delay)
            return failed_attempt(spec, error_type, message, worker, elapsed, task_traceback, attempt, delay)
        return failed_attempt(spec, error_type, message, worker, elapsed, task_traceback, attempt)
    elapsed = (time.perf_counter() - started) * 1000
    return TaskResult(
        spec.index, spec.task, spec.args, spec.kwargs, spec.id, True, value, None, None, worker, elapsed, None, attempt
    )


def _call(definition: TaskDefinition, spec: TaskSpec, watchdog: Watchdog | None, started: float) -> Any:
    """Call the task function in this thread, under the watchdog when there is one."""
    if watchdog is None:
        return definition.func(*spec.args, **spec.kwargs)
    if not definition.plain:
        watchdog.limit_task(definition.timeout)
    watchdog.task_started = started
    try:
        return definition.func(*spec.args, **spec.kwargs)
    finally:
        watchdog.task_started = None
        watchdog.task_limit = watchdog.limit


def format_task_traceback(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS, skip: int = 1) -> str:
    """The traceback of an exception raised inside a task function, without the `skip` frames of the
    worker functions that called the task (call this in the outermost one's `except` block)."""
    tb = exc.__traceback__
    for _ in range(skip):
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
