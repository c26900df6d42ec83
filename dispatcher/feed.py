"""Feed a batch's input to its submitter chunk by chunk: one route per chunk, partly filled chunks
sent while a live input waits, and back-pressure on the tasks still without a result."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from common.errors import LimitExceeded
from common.routing import route_of
from common.wire import TaskSpec
from dispatcher.chunking import ChunkSpan
from dispatcher.lines import InputIdle
from dispatcher.offered import NotOffered
from dispatcher.reader import LiveItem
from dispatcher.submit import BatchSubmitter
from dispatcher.watch import BLOCK_MS, BatchWatcher

Drain = Callable[[int | None], None]
"""Delivers the results already there (None), or waits up to that many milliseconds for more."""


class Pace(Protocol):
    """How a batch is fed (dispatcher.batch.SubmitOptions)."""

    @property
    def wait(self) -> bool:
        """Results are awaited (and drained while submitting)."""

    @property
    def streaming(self) -> bool:
        """Each chunk is sent as soon as it is full."""

    @property
    def max_in_flight(self) -> int:
        """Tasks submitted but without a result before submission waits."""


def feed_batch(
    submitter: BatchSubmitter,
    watcher: BatchWatcher,
    stream: Iterable[LiveItem | NotOffered],
    chunk_size: int,
    pace: Pace,
    drain: Drain,
) -> None:
    """Add every item to the batch: tasks in chunks of up to `chunk_size`, each line that is not a
    task as its failed result. The last chunk is added but not sent (the caller finishes the batch)."""
    limit = submitter.settings.max_batch_tasks
    chunk: list[TaskSpec] = []
    name = ""  # the task name of the chunk's last task, and its route
    route: str | None = None
    for item in stream:
        if isinstance(item, InputIdle):  # a live input waits for its producer: send what is read, deliver results
            if chunk:
                _send_chunk(submitter, watcher, chunk, pace, drain)
                chunk = []
            else:
                submitter.flush()
                if pace.wait:
                    drain(None)
            continue
        if submitter.tasks >= limit:
            raise LimitExceeded(f"batch has more than {limit} tasks (the limit); the rest was not submitted")
        if not isinstance(item, TaskSpec):  # a malformed line or a task no live worker offers: its result
            submitter.add_bad(item.to_result())
            continue
        if item.task != name:
            name, previous = item.task, route
            route = route_of(name)
            if chunk and route != previous:  # a chunk holds one route (common.routing): cut it here
                _send_chunk(submitter, watcher, chunk, pace, drain)
                chunk = []
        chunk.append(item)
        if len(chunk) >= chunk_size:
            _send_chunk(submitter, watcher, chunk, pace, drain)
            chunk = []
    if chunk:
        _add_chunk(submitter, watcher, chunk)


def _send_chunk(
    submitter: BatchSubmitter, watcher: BatchWatcher, chunk: list[TaskSpec], pace: Pace, drain: Drain
) -> None:
    """Add a finished chunk, then send and wait as the pace asks (streaming, back-pressure)."""
    sent = submitter.chunks
    _add_chunk(submitter, watcher, chunk)
    if pace.wait and submitter.chunks != sent and not pace.streaming:
        drain(None)  # a pipeline just went out: take the results already there before they pile up
    if pace.streaming:
        submitter.flush()
        if pace.wait:
            drain(None)
    while pace.wait and submitter.tasks - watcher.resolved > pace.max_in_flight:
        submitter.flush()
        drain(BLOCK_MS)


def _add_chunk(submitter: BatchSubmitter, watcher: BatchWatcher, chunk: list[TaskSpec]) -> None:
    submitter.add_chunk(chunk)
    watcher.add_chunk(ChunkSpan(chunk[0].index, chunk[-1].index, len(chunk)))
