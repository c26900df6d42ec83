"""Submit a batch and await its results, with back-pressure; or reattach to a batch by id."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from common.errors import InputError, LimitExceeded, TaskNotOffered, WaitTimeout
from common.gctuning import full_collections_deferred
from common.settings import Settings
from common.wire import TaskResult
from dispatcher.cancel import cancel_batch
from dispatcher.chunking import auto_chunk_size, peek_ahead
from dispatcher.feed import feed_batch
from dispatcher.lease import BatchRecord
from dispatcher.offered import NotOffered, OfferedFilter, OfferedTasks
from dispatcher.outage import OutageGuard
from dispatcher.reader import BadInput, Item, LiveItem
from dispatcher.status import live_capacity
from dispatcher.stopped import abort_reason, goes_on_note, in_flight_error, stopped_note
from dispatcher.submit import BatchSubmitter, new_batch_id
from dispatcher.watch import BLOCK_MS, BatchWatcher

ResultSink = Callable[[TaskResult], None]
Progress = Callable[[BatchWatcher], None]


@dataclass(frozen=True)
class SubmitOptions:
    """How one batch is submitted and awaited."""

    chunk_size: int | None = None
    wait: bool = True
    timeout: float | None = None
    max_in_flight: int = 200_000
    """Tasks submitted but without a result before submission waits: bounds Redis memory and this
    process's, while keeping several seconds of work queued for the workers."""
    source: str = "-"
    streaming: bool = False
    """Input arrives over time (stdin, a live producer): send each chunk as soon as it is full."""
    check_tasks: bool = False
    """Fail each task whose name live workers do not offer (checked as read; never enqueued)."""


@dataclass
class BatchSummary:
    """What became of a batch."""

    batch_id: str
    total: int
    ok: int
    failed: int
    complete: bool
    chunk_size: int = 0
    incomplete: BatchRecord | None = None
    """The batch's record when its input was not all submitted (aborted or abandoned); else None."""
    not_offered: str = ""
    """The task names that live workers did not offer (each failed, never enqueued), said once."""


@full_collections_deferred()
def submit_batch(
    client: redis.Redis,
    settings: Settings,
    items: Iterable[LiveItem],
    options: SubmitOptions,
    sink: ResultSink,
    progress: Progress | None = None,
    batch_id: str | None = None,
) -> BatchSummary:
    """Submit every item as a batch and (unless options.wait is False) deliver each result to `sink`."""
    screen: OfferedFilter | None = None
    screened: Iterable[LiveItem | NotOffered] = items
    if options.check_tasks:
        offered = OfferedTasks(client, settings)
        offered.refresh()
        screen = OfferedFilter(offered)
        screened = screen(items)
    total_hint: int | None = None
    read_ahead = 0
    processes = 1
    if options.chunk_size:
        chunk_size, stream = options.chunk_size, iter(screened)
    else:
        total_hint, read_ahead, stream = peek_ahead(screened, live=options.streaming)  # type: ignore[assignment]
        processes, slots = live_capacity(client, settings)
        chunk_size = auto_chunk_size(total_hint, processes, slots)
    if total_hint is not None and total_hint > settings.max_batch_tasks:
        raise LimitExceeded(
            f"batch has {total_hint} tasks, over the limit of {settings.max_batch_tasks}; nothing was submitted"
        )
    batch_id = batch_id or new_batch_id()
    submitter = BatchSubmitter(client, settings, batch_id, chunk_size, first_flush_chunks=processes)
    if not options.chunk_size:  # the look-ahead read this much of the input before anything was sent
        submitter.read_ahead = read_ahead
        submitter.read_all = total_hint is not None
    watcher = BatchWatcher(client, settings, batch_id)
    submitter.start(options.source)
    deadline = None if options.timeout is None else time.monotonic() + options.timeout

    guard = OutageGuard(settings, batch_id)

    def drain(block_ms: int | None) -> None:
        guard(submitter.keep_alive)
        _deliver_once(watcher, guard, sink, progress, deadline, block_ms)

    try:
        feed_batch(submitter, watcher, stream, chunk_size, options, drain)
    except BaseException as exc:
        unrecorded = submitter.abort(abort_reason(exc))
        if isinstance(exc, LimitExceeded):  # over the batch limit: what was submitted must not run
            with contextlib.suppress(Exception):  # keep the original error, not one from the cleanup
                cancel_batch(client, settings, batch_id)
            raise
        stopped = stopped_note(batch_id, submitter.sent, unrecorded)
        if isinstance(exc, WaitTimeout):
            raise WaitTimeout(f"timed out while submitting; {stopped}") from None
        error = in_flight_error(exc, settings, stopped)
        if error is exc:
            raise
        raise error from exc
    submitter.finish()
    watcher.set_total(submitter.tasks)
    not_offered = screen.describe() if screen is not None else ""
    if not options.wait:
        return BatchSummary(batch_id, submitter.tasks, 0, 0, False, chunk_size, not_offered=not_offered)
    try:
        while not watcher.complete:
            drain(BLOCK_MS)
    except BaseException as exc:
        error = in_flight_error(exc, settings, goes_on_note(batch_id))
        if error is exc:
            raise
        raise error from exc
    ok = watcher.resolved - watcher.failed
    return BatchSummary(batch_id, submitter.tasks, ok, watcher.failed, True, chunk_size, not_offered=not_offered)


@full_collections_deferred()
def await_batch(
    client: redis.Redis,
    settings: Settings,
    batch_id: str,
    sink: ResultSink,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Reattach to a batch by id: deliver every result already there and every one still to come."""
    watcher = BatchWatcher(client, settings, batch_id)
    watcher.load()
    deadline = None if timeout is None else time.monotonic() + timeout
    guard = OutageGuard(settings, batch_id)
    try:
        while not watcher.complete:
            _deliver_once(watcher, guard, sink, progress, deadline, BLOCK_MS)
    except BaseException as exc:
        error = in_flight_error(exc, settings, goes_on_note(batch_id))
        if error is exc:
            raise
        raise error from exc
    total = watcher.total or 0
    record = watcher.record if watcher.record is not None and watcher.record.incomplete else None
    return BatchSummary(batch_id, total, watcher.resolved - watcher.failed, watcher.failed, True, incomplete=record)


def _deliver_once(
    watcher: BatchWatcher,
    guard: OutageGuard,
    sink: ResultSink,
    progress: Progress | None,
    deadline: float | None,
    block_ms: int | None,
) -> None:
    """One step of every wait: read new results, resolve stalled chunks, show progress, check the deadline."""
    many = getattr(sink, "write_many", None)  # a sink that takes a block at once (ResultWriter)
    for results in (guard(lambda: watcher.poll(block_ms)), guard(watcher.check_stalled)):
        if many is not None:
            many(results)
            continue
        for result in results:
            sink(result)
    if progress is not None:
        progress(watcher)
    _check_deadline(deadline, watcher.batch_id)


def _check_deadline(deadline: float | None, batch_id: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise WaitTimeout(
            f"timed out waiting for batch {batch_id}; it goes on: `dispatcher results {batch_id}` fetches its results"
        )


def refuse_bad_input(items: Iterable[Item], offered: OfferedTasks | None = None) -> None:
    """The --strict check, before anything is enqueued: raise InputError for the first malformed
    line, or TaskNotOffered for the first task that live workers do not offer (`offered`)."""
    for item in items:
        if isinstance(item, BadInput):
            raise InputError(f"line {item.line_no}: {item.message} (--strict: nothing was submitted)")
        if offered is not None and offered.refuses(item.task):
            raise TaskNotOffered(
                f"task {item.index + 1} of the input: {offered.describe_refusal(item.task)} "
                "(--strict: nothing was submitted)"
            )
