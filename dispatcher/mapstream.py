"""The pieces of RedisExecutor that turn task results into futures: map's chunked stream, remote errors."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, Protocol

from common.errors import RemoteTaskError, RemoteTraceback
from common.wire import TaskResult, TaskSpec
from dispatcher.callspec import task_spec


def remote_error(result: TaskResult) -> RemoteTaskError:
    """The exception a failed task's Future raises, with the remote traceback as its cause."""
    error = RemoteTaskError(result.error_type or "Error", result.error_message or "", result.traceback, result.task)
    if result.traceback:
        error.__cause__ = RemoteTraceback(result.traceback)
    return error


class ChunkResults:
    """The results of one map() chunk, behind one Future: a Future per task would cost more than the task."""

    __slots__ = ("errors", "first", "future", "remaining", "values")

    def __init__(self, size: int) -> None:
        self.first = -1
        self.values: list[Any] = [None] * size
        self.errors: dict[int, RemoteTaskError] = {}
        self.remaining = size
        self.future: Future[ChunkResults] = Future()

    def put(self, result: TaskResult) -> None:
        """Record one task's result (called by the reader only); resolve the future with the last one."""
        position = result.index - self.first
        if result.ok:
            self.values[position] = result.value
        else:
            self.errors[position] = remote_error(result)
        self.remaining -= 1
        if self.remaining == 0 and self.future.set_running_or_notify_cancel():
            self.future.set_result(self)


Target = Future[Any] | ChunkResults
"""Where a task's result goes: its own Future (submit) or its map chunk."""


def future_of(target: Target) -> Future[Any]:
    """The Future behind a target."""
    return target.future if isinstance(target, ChunkResults) else target


def fail_target(target: Target, exc: BaseException) -> None:
    """Fail a target's future unless it is already done or cancelled."""
    future = future_of(target)
    if not future.done() and future.set_running_or_notify_cancel():
        future.set_exception(exc)


class ChunkSender(Protocol):
    """Where a MapStream sends its chunks (dispatcher.executorbatch.ExecutorBatch)."""

    def add_chunk(self, specs: list[TaskSpec], slot: ChunkResults) -> None:
        """Number a chunk's tasks and queue it; its results go to `slot`."""

    def flush(self) -> None:
        """Send everything queued now, in one round trip."""


class MapStream:
    """One map() call: reads its input a chunk at a time, keeping at most `window` tasks unconsumed."""

    def __init__(
        self,
        sender: ChunkSender,
        name: str,
        arguments: Iterator[tuple[Any, ...]],
        size: int,
        window: int,
        max_arg_bytes: int,
    ) -> None:
        self.sender = sender
        self.name = name
        self.max_arg_bytes = max_arg_bytes
        self.arguments = arguments
        self.size = size
        self.window = window
        self.in_flight: deque[ChunkResults] = deque()
        self.unconsumed = 0
        self.exhausted = False

    def fill(self) -> None:
        """Submit whole chunks while the window has room for one (all in one round trip)."""
        added = False
        while not self.exhausted and self.unconsumed + self.size <= self.window:
            items = list(itertools.islice(self.arguments, self.size))
            if len(items) < self.size:
                self.exhausted = True
            if not items:
                break
            specs = [task_spec(self.name, args, {}, self.max_arg_bytes) for args in items]
            slot = ChunkResults(len(specs))
            self.sender.add_chunk(specs, slot)
            self.in_flight.append(slot)
            self.unconsumed += len(specs)
            added = True
        if added:
            self.sender.flush()

    def results(self, deadline: float | None) -> Iterator[Any]:
        """Yield each result in input order, refilling the window as results are consumed."""
        try:
            while self.in_flight:
                self.fill()
                slot = self.in_flight[0]
                slot.future.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
                self.in_flight.popleft()
                for position, value in enumerate(slot.values):
                    error = slot.errors.get(position)
                    if error is not None:
                        raise error
                    self.unconsumed -= 1
                    yield value
        finally:
            for slot in self.in_flight:
                slot.future.cancel()
