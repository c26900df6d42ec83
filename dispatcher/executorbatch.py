"""The batch behind a RedisExecutor: numbers its tasks, sends them from a sender thread and
resolves their futures from a reader thread (one XREAD BLOCK on the batch's result stream)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import BrokenExecutor, Future
from typing import Any

import redis

from common import keys
from common.connection import describe_redis_error
from common.errors import LimitExceeded
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.cancel import cancel_unstarted_chunks
from dispatcher.chunking import ChunkSpan, Pending, group_pending, order_by_route
from dispatcher.mapstream import ChunkResults, Target, fail_target, future_of, remote_error
from dispatcher.submit import BatchSubmitter
from dispatcher.watch import BLOCK_MS, BatchWatcher

log = logging.getLogger("dispatcher")

RETRY_DELAY_MAX = 5.0
"""Longest pause between the reader's attempts while Redis is unreachable."""


class BrokenRedisExecutor(BrokenExecutor):
    """The executor could not enqueue tasks (Redis failed mid-send); it accepts no more tasks."""


class ExecutorBatch:
    """One executor's batch, opened on its first task and finished by `close()`.

    Every task is numbered under a lock and queued with where its result goes (its Future, or its
    map chunk's ChunkResults); the sender thread enqueues whatever is queued, and the reader thread
    resolves each target from the batch's result stream (BatchWatcher).
    """

    def __init__(self, client: redis.Redis, settings: Settings, batch_id: str, chunksize: int | None) -> None:
        self.client = client
        self.settings = settings
        self.batch_id = batch_id
        self.chunksize = chunksize
        """Tasks per chunk for submits that arrive together (map's chunks come whole); None: 1."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()
        self._futures: dict[int, Target] = {}
        self._pending: Pending = []
        self._next_index = 0
        self._shutdown = False
        self._closing = False
        self._cancel_requested = False
        self._broken: str | None = None
        self._submitter: BatchSubmitter | None = None
        self._watcher = BatchWatcher(client, settings, batch_id)
        self._threads: list[threading.Thread] = []

    def add_task(self, spec: TaskSpec, future: Future[Any]) -> None:
        """Queue one submitted task; tasks submitted together are grouped into chunks when sent."""
        self._add(True, [spec], future)

    def add_chunk(self, specs: list[TaskSpec], slot: ChunkResults) -> None:
        """Queue one map() chunk, sent as one chunk; its results go to `slot`."""
        self._add(False, specs, slot)

    def close(self, wait: bool, cancel_futures: bool) -> None:
        """Accept no more tasks, finish the batch (its total becomes known), optionally wait or cancel."""
        with self._lock:
            first = not self._shutdown
            self._shutdown = True
            if cancel_futures:
                for target in self._futures.values():
                    future_of(target).cancel()
                self._cancel_requested = True
        if first:
            self.flush()
            self._finish_batch()
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _add(self, loose: bool, specs: list[TaskSpec], target: Target) -> None:
        """Number the tasks, register where their results go and queue them for the sender."""
        with self._lock:
            if self._broken:
                raise BrokenRedisExecutor(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._next_index + len(specs) > self.settings.max_batch_tasks:
                raise LimitExceeded(
                    f"this executor's batch reached {self.settings.max_batch_tasks} tasks (the "
                    "batch limit, DW_MAX_BATCH_TASKS); use a new executor"
                )
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

    # -- the sender ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        """Send what is pending as soon as it is there; tasks that arrive meanwhile go in the next send."""
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if not self._pending and self._closing:
                    return
            self.flush()

    def flush(self) -> None:
        """Enqueue everything pending in one pipelined round trip (one sender at a time)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, []
                self._group_submits_by_route(pending)
            if not pending:
                return
            chunks = list(group_pending(pending, self.chunksize or 1))
            try:
                submitter = self._open_batch()
                for chunk in chunks:
                    submitter.add_chunk(chunk)
                    self._watcher.add_chunk(ChunkSpan(chunk[0].index, chunk[-1].index, len(chunk)))
                submitter.flush()
            except Exception as exc:
                self._break(chunks, exc)

    def _group_submits_by_route(self, pending: Pending) -> None:
        """Renumber pending submits so that the tasks of one route follow each other (see
        chunking.order_by_route). Call with the lock held: nothing of them was sent, so only their
        futures know their indices."""
        moves = order_by_route(pending)
        targets = [self._futures.pop(old) for old, _new in moves]
        for (_old, new), target in zip(moves, targets, strict=True):
            self._futures[new] = target

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

    # -- the reader ---------------------------------------------------------------------------

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
        return cancel_unstarted_chunks(self.client, self._watcher, self.settings.queue, live)
