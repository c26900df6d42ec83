"""`RedisExecutor`: a concurrent.futures.Executor whose tasks run on workers anywhere, through Redis.

Design: an executor is one batch, opened on its first task and finished by `shutdown()`. Every
`submit()` and `map()` appends tasks to it, so one background reader (one XREAD BLOCK on the batch's
result stream, through BatchWatcher) resolves every future of the executor. Tasks travel as the
CLI's do (BatchSubmitter: RQ chunk jobs, one enqueue script call per flush), so the batch shows in `dispatcher status`
and `dispatcher results ID` reads it; until shutdown its state is 'open' and it has no total.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future
from typing import Any

import redis

from common import keys
from common.catalogue import TASK_NAME_PATTERN, default_catalogue
from common.connection import check_connection, connect, describe_redis_error
from common.errors import ConfigurationError, LimitExceeded
from common.routing import route_of
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, encode_value
from dispatcher.cancel import chunk_queues
from dispatcher.chunking import auto_chunk_size, cut_by_route, peek_total
from dispatcher.mapstream import ChunkResults, MapStream, Target, fail_target, future_of, plain_arguments, remote_error
from dispatcher.offered import OfferedTasks
from dispatcher.status import live_capacity
from dispatcher.submit import BatchSubmitter, new_batch_id
from dispatcher.watch import BatchWatcher, ChunkSpan

log = logging.getLogger("dispatcher")

DEFAULT_MAX_IN_FLIGHT = 20_000
"""Tasks one `map()` call keeps submitted but not yet consumed; the rest of its input is not read."""
BLOCK_MS = 500
"""Longest blocking read of the result stream; between reads the reader checks for stalled chunks."""
RETRY_DELAY_MAX = 5.0
"""Longest pause between the reader's attempts while Redis is unreachable."""


_live: weakref.WeakSet[RedisExecutor] = weakref.WeakSet()
"""Executors not shut down yet: at exit their batches are finished, so `dispatcher results` can end."""


@atexit.register
def _finish_live_batches() -> None:
    for executor in list(_live):
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False)


class BrokenRedisExecutor(BrokenExecutor):
    """The executor could not enqueue tasks (Redis failed mid-send); it accepts no more tasks."""


class RedisExecutor(Executor):
    """A concurrent.futures.Executor that runs registered tasks on `worker` processes via Redis.

    `task` arguments are a task name (`"add"`, `"images.resize"`) or the `@task`-decorated function
    itself. Arguments and results travel as JSON (tuples arrive as lists). A task's exception is
    raised from `Future.result()` as RemoteTaskError (remote type, message and traceback text).
    """

    def __init__(self, redis_url: str | None = None, queue: str | None = None, chunksize: int | None = None,
                 timeout: float | None = None, *, check_tasks: bool = True,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, result_ttl: int | None = None) -> None:  # fmt: skip
        """Connect (URL from REDIS_URL when None) and check Redis answers; nothing is written yet.

        chunksize: tasks per RQ job (map's default; submits that arrive together are grouped up to
        it; default: automatic for map, 1 for submit). timeout: default seconds `map()` waits for
        its results. check_tasks: refuse (TaskNotOffered) a task that live workers serve the queue but
        none offers, before enqueueing it; with no live worker, tasks are enqueued and wait for one.
        """
        if chunksize is not None and chunksize < 1:
            raise ConfigurationError("chunksize must be at least 1")
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        self.settings = Settings.from_env(redis_url=redis_url, queue=queue, result_ttl=result_ttl)
        self.client = connect(self.settings)
        check_connection(self.client, self.settings)
        self.chunksize = chunksize
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.batch_id = new_batch_id()
        self.offered = OfferedTasks(self.client, self.settings) if check_tasks else None
        self._names: dict[Callable[..., Any], str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()
        self._futures: dict[int, Target] = {}
        self._pending: list[tuple[bool, list[TaskSpec]]] = []
        self._next_index = 0
        self._shutdown = False
        self._closing = False
        self._cancel_requested = False
        self._broken: str | None = None
        self._submitter: BatchSubmitter | None = None
        self._watcher = BatchWatcher(self.client, self.settings, self.batch_id)
        self._threads: list[threading.Thread] = []
        _live.add(self)

    # -- the Executor interface -------------------------------------------------------------

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue one task and return its Future; sent by a background sender, with any others pending."""
        name = self.task_name(fn)
        self._require(name)
        spec = self._spec(name, args, kwargs)
        future: Future[Any] = Future()
        self._add(True, [spec], future)
        return future

    def map(self, fn: Callable[..., Any] | str, *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None) -> Iterator[Any]:  # fmt: skip
        """Like Executor.map, but streaming: at most `max_in_flight` tasks are submitted and unconsumed.

        The first window is submitted now; the rest as results are consumed. Results come in input
        order; the first failed task raises its RemoteTaskError, and the tasks after it are cancelled.
        """
        name = self.task_name(fn)
        self._require(name)
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        arguments: Iterator[tuple[Any, ...]] = zip(*iterables)  # noqa: B905 (stops at the shortest, like Executor.map)
        size = chunksize or self.chunksize
        if size is None:
            total, arguments = peek_total(arguments, self.max_in_flight)  # type: ignore[assignment]
            size = self._auto_chunksize(total)
        stream = MapStream(self, name, arguments, size, max(self.max_in_flight, size))
        stream.fill()
        return stream.results(deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more tasks, finish the batch (its total becomes known), optionally wait or cancel.

        cancel_futures: cancel every pending future and take its chunk off the queue if no worker
        has started it (its tasks then get a Cancelled result); chunks already running still run.
        """
        _live.discard(self)
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            if cancel_futures:
                for target in self._futures.values():
                    future_of(target).cancel()
                self._cancel_requested = True
        if first:
            self._flush()
            self._finish_batch()
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    # -- helpers used by the interface ------------------------------------------------------

    def task_name(self, task: Callable[..., Any] | str) -> str:
        """The catalogue name of a task given by name or by its @task-decorated function."""
        if isinstance(task, str):
            if not TASK_NAME_PATTERN.match(task):
                raise ValueError(f"invalid task name {task[:60]!r}")
            return task
        name = self._names.get(task)
        if name is None:
            # An `async def` task is known by its coroutine function (what @task returned to the user).
            self._names = {
                func: d.name for d in default_catalogue for func in (d.func, d.coroutine) if func is not None
            }
            name = self._names.get(task)
        if name is None:
            raise TypeError(f"{task!r} is not a registered task: decorate it with @task (from common import task) "
                            "and serve its module with `worker --tasks MODULE`, or pass a task name")  # fmt: skip
        return name

    def _require(self, name: str) -> None:
        if self.offered is not None:
            self.offered.require(name)

    def _spec(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskSpec:
        """A task spec with its index unset; refuses arguments JSON cannot carry, before anything is sent."""
        if not kwargs and plain_arguments(args, self.settings.max_arg_bytes):
            return TaskSpec(-1, name, list(args), {}, None)
        try:
            encoded = encode_value([args, kwargs])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments of task {name!r} cannot be sent as JSON: {exc}") from None
        if len(encoded) > self.settings.max_arg_bytes // 4 and len(encoded.encode()) > self.settings.max_arg_bytes:
            raise LimitExceeded(f"arguments of task {name!r} are over the {self.settings.max_arg_bytes}-byte limit")
        return TaskSpec(-1, name, list(args), kwargs, None)

    def _auto_chunksize(self, total: int | None) -> int:
        if self.offered is not None and self.offered.workers:
            processes, slots = self.offered.workers, self.offered.slots
        else:
            processes, slots = live_capacity(self.client, self.settings)
        size = auto_chunk_size(total, processes, slots)
        return max(1, min(size, self.max_in_flight // 4))

    def _add(self, loose: bool, specs: list[TaskSpec], target: Target) -> None:
        """Number the tasks, register where their results go and queue them for the sender."""
        with self._lock:
            if self._broken:
                raise BrokenRedisExecutor(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._next_index + len(specs) > self.settings.max_batch_tasks:
                raise LimitExceeded(f"this executor's batch reached {self.settings.max_batch_tasks} tasks (the "
                                    "batch limit, DW_MAX_BATCH_TASKS); use a new executor")  # fmt: skip
            if isinstance(target, ChunkResults):
                target.first = self._next_index
            for spec in specs:
                spec.index = self._next_index
                self._next_index += 1
                self._futures[spec.index] = target
            self._pending.append((loose, specs))
            if not self._threads:
                self._start_threads()
            self._changed.notify_all()

    def _start_threads(self) -> None:
        for target, role in ((self._send_loop, "sender"), (self._read_loop, "reader")):
            thread = threading.Thread(target=target, name=f"RedisExecutor-{self.batch_id}-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _send_loop(self) -> None:
        """Send what is pending as soon as it is there; tasks that arrive meanwhile go in the next send."""
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if not self._pending and self._closing:
                    return
            self._flush()

    def _flush(self) -> None:
        """Enqueue everything pending in one pipelined round trip (one sender at a time)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, []
                self._group_submits_by_route(pending)
            if not pending:
                return
            chunks = list(_group(pending, self.chunksize or 1))
            try:
                submitter = self._open_batch()
                for chunk in chunks:
                    submitter.add_chunk(chunk)
                    self._watcher.add_chunk(ChunkSpan(chunk[0].index, chunk[-1].index, len(chunk)))
                submitter.flush()
            except Exception as exc:
                self._break(chunks, exc)

    def _group_submits_by_route(self, pending: list[tuple[bool, list[TaskSpec]]]) -> None:
        """Renumber each run of pending submits within the run's own indices so that the tasks of one
        route follow each other (a chunk holds one route and a contiguous index range; `_group` cuts
        the run in index order). Call with the lock held: nothing of them was sent, so only their
        futures know their indices."""
        for loose, run in itertools.groupby(pending, key=lambda entry: entry[0]):
            if not loose:
                continue
            specs = [spec for _loose, group in run for spec in group]
            routes = list(dict.fromkeys(route_of(spec.task) for spec in specs))
            if len(routes) < 2:
                continue
            indices = sorted(spec.index for spec in specs)
            order = sorted(specs, key=lambda spec: (routes.index(route_of(spec.task)), spec.index))
            targets = [self._futures.pop(spec.index) for spec in order]
            for spec, index, target in zip(order, indices, targets, strict=True):
                spec.index = index
                self._futures[index] = target

    def _open_batch(self) -> BatchSubmitter:
        if self._submitter is None:
            submitter = BatchSubmitter(self.client, self.settings, self.batch_id, self.chunksize or 1)
            submitter.start(f"python RedisExecutor on {socket.gethostname()} pid {os.getpid()}")
            self.client.hset(keys.batch_key(self.batch_id), "state", "open")
            self._submitter = submitter
        return self._submitter

    def _break(self, chunks: list[list[TaskSpec]], exc: Exception) -> None:
        """A send failed: its tasks may or may not be in Redis, so the batch cannot be trusted any more."""
        error: Exception = exc
        if isinstance(exc, (redis.RedisError, OSError)):
            error = describe_redis_error(self.settings.redis_url, exc)
        with self._lock:
            self._broken = f"sending tasks to Redis failed: {error}"
            targets = [self._futures.pop(spec.index, None) for chunk in chunks for spec in chunk]
        for target in targets:
            if target is not None:
                fail_target(target, BrokenRedisExecutor(f"task not sent: {error}"))

    def _finish_batch(self) -> None:
        with self._flush_lock:
            if self._submitter is not None and not self._broken:
                self._submitter.finish()
                self._watcher.set_total(self._submitter.tasks)

    # -- the reader -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Resolve futures from the batch's result stream until the executor is closed and idle."""
        failures = 0
        last_check = time.monotonic()
        while True:
            with self._lock:
                while not self._futures and not self._closing:
                    self._changed.wait()
                if not self._futures and (self._closing or self._broken):
                    return
            try:
                fresh = self._watcher.poll(BLOCK_MS)
                if self._cancel_requested or time.monotonic() - last_check >= self.settings.heartbeat_interval:
                    with self._flush_lock:
                        if self._cancel_requested:
                            self._cancel_requested = False
                            fresh.extend(self._cancel_queued_chunks())
                        fresh.extend(self._watcher.check_stalled(force=True))
                    # An executor may outlive the result TTL that its batch record was given at start.
                    self.client.expire(keys.batch_key(self.batch_id), self.settings.result_ttl)
                    if self._submitter is not None:
                        self._submitter.keep_alive()
                    last_check = time.monotonic()
                failures = 0
            except (redis.RedisError, OSError) as exc:
                failures += 1
                log.warning("executor %s: reading results failed (%s); retrying", self.batch_id, exc)
                time.sleep(min(RETRY_DELAY_MAX, 0.2 * 2**failures))
                continue
            except Exception as exc:  # a bug must fail the futures, not leave them hanging
                log.exception("executor %s: result reader stopped", self.batch_id)
                self._fail_all(exc)
                return
            self._deliver(fresh)

    def _deliver(self, results: list[TaskResult]) -> None:
        with self._lock:
            pairs = [(self._futures.pop(result.index, None), result) for result in results]
        for target, result in pairs:
            if isinstance(target, ChunkResults):
                target.put(result)
                continue
            future = target
            if future is None or not future.set_running_or_notify_cancel():
                continue
            if result.ok:
                future.set_result(result.value)
            else:
                future.set_exception(remote_error(result))

    def _fail_all(self, exc: Exception) -> None:
        with self._lock:
            self._broken = f"result reader stopped: {exc}"
            targets, self._futures = list(self._futures.values()), {}
        for target in targets:
            fail_target(target, exc)

    def _cancel_queued_chunks(self) -> list[TaskResult]:
        """Take queued chunks whose futures are all cancelled off the queue; their tasks get Cancelled."""
        with self._lock:
            live = {index for index, target in self._futures.items() if not future_of(target).cancelled()}
        queues = chunk_queues(self.client, self.batch_id, self.settings.queue, len(self._watcher.chunks))
        fresh: list[TaskResult] = []
        for chunk, span in enumerate(self._watcher.chunks):
            if span.done >= span.size or any(i in live for i in range(span.first, span.last + 1)):
                continue
            job_id = keys.chunk_job_id(self.batch_id, chunk)
            if self.client.lrem(keys.rq_queue_key(queues[chunk]), 0, job_id):
                fresh.extend(self._watcher.resolve_chunk(chunk, "Cancelled", "cancelled before it ran"))
                self.client.delete(keys.rq_job_key(job_id))
        return fresh


def _group(pending: list[tuple[bool, list[TaskSpec]]], size: int) -> Iterator[list[TaskSpec]]:
    """Chunks to enqueue: map's chunks as they are, runs of submitted tasks grouped up to `size`, one
    route per chunk."""
    for loose, run in itertools.groupby(pending, key=lambda entry: entry[0]):
        if not loose:
            for _loose, specs in run:
                yield specs
            continue
        specs = sorted((spec for _loose, group in run for spec in group), key=lambda spec: spec.index)
        yield from cut_by_route(specs, size)
