"""Coroutine tasks on an event loop: one task's execution, its time limit, and the slots' shared work
(the loop itself: worker.eventloop)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from types import TracebackType
from typing import Any

from common.catalogue import TaskDefinition
from common.errors import TaskTimeout
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from worker.execute import PendingRetry, check_result_size, failed_attempt, format_task_traceback


class Deadlines:
    """Stops coroutine tasks that overrun their time limit, with one repeating timer per chunk.

    Like worker.execute.Watchdog, and for the same reason: a timeout per task (asyncio.timeout or
    wait_for) cost a third of a small task's time on async slots; a check every limit/4 (at most
    1 s) costs nothing per task and stops an overrun within that period.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float) -> None:
        self.limit = limit
        self._loop = loop
        self._period = min(1.0, limit / 4)
        self._started: dict[asyncio.Task[Any], float] = {}
        self._limits: dict[asyncio.Task[Any], float] = {}
        """Tasks running under a limit of their own (`@task(timeout=S)`), and that limit."""
        self._expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> Deadlines:
        self._handle = self._loop.call_later(self._period, self._check)
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self._loop.time()
        limits = self._limits
        for task, started in self._started.items():
            limit = limits.get(task, self.limit) if limits else self.limit
            if now - started > limit and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._handle = self._loop.call_later(self._period, self._check)

    async def run(self, awaitable: Awaitable[Any], limit: float | None = None) -> Any:
        """Await `awaitable` in the current task; TaskTimeout if it is still running after the limit
        (`limit`, the task's own, or the worker's)."""
        task = asyncio.current_task()
        assert task is not None
        self._started[task] = self._loop.time()
        if limit is not None:
            self._limits[task] = limit
            if limit / 4 < self._period:  # check often enough for this task until the chunk ends
                self._period = limit / 4
                if self._handle is not None:
                    self._handle.cancel()
                    self._handle = self._loop.call_later(self._period, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            raise TaskTimeout(f"task ran longer than {limit or self.limit:g} s and was stopped") from None
        finally:
            del self._started[task]
            if limit is not None:
                del self._limits[task]
            if task in self._expired:  # handled here (or swallowed by the task): the slot goes on
                self._expired.discard(task)
                uncancel = getattr(task, "uncancel", None)  # Python 3.11+
                if uncancel is not None:
                    uncancel()


async def execute_coroutine_task(
    spec: TaskSpec,
    definition: TaskDefinition,
    settings: Settings,
    worker: str,
    deadlines: Deadlines,
    attempt: int = 1,
    previous_delay: float = 0.0,
) -> TaskResult:
    """Await attempt `attempt` of one coroutine task under its time limit; never raises for anything
    the task or its input did wrong (worker.execute.execute_task's contract, for tasks with an
    `async def` form), and a failure its retry policy retries is a PendingRetry."""
    started = time.perf_counter()
    task_traceback: str | None = None
    in_task = False
    try:
        definition.check_arguments(spec.args, spec.kwargs)
        assert definition.coroutine is not None
        in_task = True
        try:
            value = await deadlines.run(definition.coroutine(*spec.args, **spec.kwargs), definition.timeout)
        except TaskTimeout:
            raise
        except Exception as exc:
            task_traceback = format_task_traceback(exc.with_traceback(_task_frames(exc.__traceback__)))
            raise
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            task_traceback = format_task_traceback(exc.with_traceback(_task_frames(exc.__traceback__)))
            raise RuntimeError("task raised CancelledError without being cancelled") from None
        in_task = False
        check_result_size(value, settings.max_result_bytes)
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        policy = definition.retry if in_task else None
        delay = None
        if policy is not None and policy.retries_error(exc, attempt):
            delay = policy.delay(attempt, previous_delay)
        message = str(exc) or type(exc).__name__
        return failed_attempt(spec, type(exc).__name__, message, worker, elapsed, task_traceback, attempt, delay)
    elapsed = (time.perf_counter() - started) * 1000
    return TaskResult(
        spec.index, spec.task, spec.args, spec.kwargs, spec.id, True, value, None, None, worker, elapsed, None, attempt
    )


AwaitedItem = tuple[TaskSpec, TaskDefinition, int, float]
"""A coroutine task to run: (spec, definition, attempt number, the delay drawn before it)."""


class AwaitedWork:
    """A chunk's coroutine tasks, shared by the async slots; a retry comes back once its backoff
    (slept on the loop, outside every slot) is over."""

    def __init__(self, pairs: list[tuple[TaskSpec, TaskDefinition]]) -> None:
        self._fresh = iter(pairs)
        self._ready: deque[AwaitedItem] = deque()
        self._sleepers: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None

    def take(self) -> AwaitedItem | None:
        """The next task to run now, if any (retries that are due first)."""
        if self._ready:
            return self._ready.popleft()
        pair = next(self._fresh, None)
        return None if pair is None else (pair[0], pair[1], 1, 0.0)

    async def take_later(self) -> AwaitedItem | None:
        """The next retry once its backoff is over; None when no retry waits (the slot is done)."""
        while self._ready or self._sleepers:
            if self._ready:
                return self._ready.popleft()
            if self._wake is None:
                self._wake = asyncio.Event()
            self._wake.clear()
            await self._wake.wait()
        return None

    def retry_later(self, failed: PendingRetry, definition: TaskDefinition) -> None:
        """Run the task again after `failed.delay` seconds, in whichever slot is free then."""
        spec = TaskSpec(failed.index, failed.task, failed.args, failed.kwargs, failed.id)
        item = (spec, definition, failed.attempts + 1, failed.delay)
        sleeper = asyncio.get_running_loop().create_task(self._back_off(item, failed.delay))
        self._sleepers.add(sleeper)

    async def _back_off(self, item: AwaitedItem, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._ready.append(item)
        finally:
            self._sleepers.discard(asyncio.current_task())
            if self._wake is not None:
                self._wake.set()

    def cancel(self) -> None:
        """Drop the retries still backing off (the chunk is failing)."""
        for sleeper in list(self._sleepers):
            sleeper.cancel()


def _being_cancelled() -> bool:
    """Whether the running task was asked to stop (rather than the task's code raising CancelledError)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or bool(cancelling())


def _task_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the last frame of this module or asyncio before the task's own frames:
    format_task_traceback drops that calling frame, and the ones before it say nothing either."""
    while tb is not None and tb.tb_next is not None and _is_machinery(tb.tb_next.tb_frame.f_globals.get("__name__")):
        tb = tb.tb_next
    return tb


def _is_machinery(module: object) -> bool:
    return isinstance(module, str) and (module in ("asyncio", __name__) or module.startswith("asyncio."))
