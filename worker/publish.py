"""Publish task results to a batch's result stream, grouped so a chunk costs a few round trips."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from common import keys
from common.durability import ReplicaWait
from common.events import TASKS_RETRIED
from common.wire import ResultRow, TaskResult, encode_result_rows, result_row

FLUSH_EVERY_RESULTS = 2000
"""Results buffered before a flush, when tasks are fast."""
FLUSH_EVERY_SECONDS = 0.2
"""Longest a finished result waits in the buffer, when tasks are slow."""


@dataclass(frozen=True, slots=True)
class ResultWrite:
    """The Redis writes that publish one group of results: one stream entry and its counters.

    `counters` are (hash key, field, amount, expire with the stream) increments. The worker may
    send these writes inside its job-success step instead of on their own.
    """

    stream: str
    fields: dict[str, str]
    ttl: int
    counters: tuple[tuple[str, str, int, bool], ...]

    def apply(self, pipe: Any) -> None:
        """Queue the writes on a pipeline."""
        pipe.xadd(self.stream, self.fields)
        pipe.expire(self.stream, self.ttl)
        for key, field, amount, _expires in self.counters:
            pipe.hincrby(key, field, amount)
        # HINCRBY would recreate an expired record without a TTL; keep it expiring with its results.
        for key in dict.fromkeys(key for key, _field, _amount, expires in self.counters if expires):
            pipe.expire(key, self.ttl)


ResultHandover = Callable[[ResultWrite], None]
"""Takes a chunk's last results and promises to write them with the job's success bookkeeping."""


class ResultPublisher:
    """Buffers one chunk's results and writes them as stream entries with one pipelined round trip.

    With a `handover` (the worker offers one while it will record the job's success in one step),
    the chunk's last results go with that step instead of costing a round trip of their own.
    """

    def __init__(
        self,
        client: redis.Redis,
        batch_id: str,
        chunk: int,
        ttl: int,
        worker: str,
        handover: ResultHandover | None = None,
        wait: ReplicaWait | None = None,
    ) -> None:
        self._client = client
        self._wait = wait
        self._batch_id = batch_id
        self._chunk = chunk
        self._ttl = ttl
        self._worker = worker
        self._handover = handover
        self._rows: list[ResultRow] = []
        self._failed = 0
        self._tracebacks: dict[int, str] = {}
        self._attempts: dict[int, int] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def for_job(
        cls, job: Any, batch_id: str, chunk: int, ttl: int, worker: str, wait: ReplicaWait | None = None
    ) -> ResultPublisher:
        """A publisher for the running RQ job, with the handover the worker offers (`job.result_handover`)."""
        return cls(job.connection, batch_id, chunk, ttl, worker, getattr(job, "result_handover", None), wait)

    def add(self, result: TaskResult) -> None:
        """Buffer a result; flush when the buffer is large or old."""
        with self._lock:
            self._rows.append(result_row(result))
            if not result.ok:
                self._failed += 1
                if result.traceback:
                    self._tracebacks[result.index] = result.traceback
            if result.attempts > 1:
                self._attempts[result.index] = result.attempts
            due = len(self._rows) >= FLUSH_EVERY_RESULTS or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
            if due:
                self._flush_locked()

    def add_rows(
        self, rows: list[ResultRow], failed: int, tracebacks: dict[int, str], attempts: dict[int, int] | None = None
    ) -> None:
        """Write results already in wire form now (the caller batches them: see worker/serial.py).

        With a handover, rows that come early in a fast chunk (few, and soon after the last write)
        wait instead: they are most likely the chunk's last, which finish() hands over. Rows of slow
        tasks (the caller writes those every FLUSH_EVERY_SECONDS) and large groups go out at once.
        """
        with self._lock:
            self._rows.extend(rows)
            self._failed += failed
            self._tracebacks.update(tracebacks)
            if attempts:
                self._attempts.update(attempts)
            if (
                self._handover is not None
                and len(self._rows) < FLUSH_EVERY_RESULTS
                and time.monotonic() - self._last_flush < FLUSH_EVERY_SECONDS / 2
            ):
                return
            self._flush_locked()

    def flush(self) -> None:
        """Write every buffered result now."""
        with self._lock:
            self._flush_locked()

    def flush_with(self, extra: Callable[[Any], None]) -> None:
        """Write every buffered result now, and `extra`'s commands (queued on the same pipeline,
        after the results) in the same round trip."""
        with self._lock:
            self._last_flush = time.monotonic()
            pipe = self._client.pipeline(transaction=False)
            if self._rows:
                self._take_write().apply(pipe)
            extra(pipe)
            pipe.execute()

    def finish(self) -> None:
        """The chunk is done: its remaining results go with the job's success step when the worker
        offers that (one round trip for both), else they are written now."""
        with self._lock:
            if self._handover is None or not self._rows:
                self._flush_locked()
                return
            handover, self._handover = self._handover, None
            handover(self._take_write())

    def _take_write(self) -> ResultWrite:
        rows, failed, tracebacks, attempts = self._rows, self._failed, self._tracebacks, self._attempts
        self._rows, self._failed, self._tracebacks, self._attempts = [], 0, {}, {}
        batch_key = keys.batch_key(self._batch_id)
        counters = [(batch_key, "done", len(rows), True)]
        if failed:
            counters.append((batch_key, "failed", failed, True))
        # RQ keeps this hash alive (and expiring) while the worker runs; we only count into it.
        counters.append((keys.RQ_WORKER_PREFIX + self._worker, keys.TASKS_DONE_FIELD, len(rows), False))
        retried = sum(1 for count in attempts.values() if count > 1)
        if retried:  # `dispatcher status` counts them; the bucket expires with these results or sooner
            counters.append((keys.events_key(int(time.time() // 60)), TASKS_RETRIED, retried, True))
        fields = encode_result_rows(self._worker, self._chunk, rows, tracebacks, attempts)
        return ResultWrite(keys.results_key(self._batch_id), fields, self._ttl, tuple(counters))

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        pipe = self._client.pipeline(transaction=False)
        self._take_write().apply(pipe)
        if self._wait is not None:  # the durable option (common.durability)
            pipe.execute_command(*self._wait.command)  # type: ignore[no-untyped-call]
        replies = pipe.execute()
        if self._wait is not None:
            self._wait.check(replies[-1], f"batch {self._batch_id} chunk {self._chunk}: results")
