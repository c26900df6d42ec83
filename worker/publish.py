"""Publish task results to a batch's result stream, grouped so a chunk costs a few round trips."""

from __future__ import annotations

import threading
import time

import redis

from common import keys
from common.wire import ResultRow, TaskResult, encode_result_rows, result_row

FLUSH_EVERY_RESULTS = 2000
"""Results buffered before a flush, when tasks are fast."""
FLUSH_EVERY_SECONDS = 0.2
"""Longest a finished result waits in the buffer, when tasks are slow."""


class ResultPublisher:
    """Buffers one chunk's results and writes them as stream entries with one pipelined round trip."""

    def __init__(self, client: redis.Redis, batch_id: str, chunk: int, ttl: int, worker: str) -> None:
        self._client = client
        self._batch_id = batch_id
        self._chunk = chunk
        self._ttl = ttl
        self._worker = worker
        self._rows: list[ResultRow] = []
        self._failed = 0
        self._tracebacks: dict[int, str] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def add(self, result: TaskResult) -> None:
        """Buffer a result; flush when the buffer is large or old."""
        with self._lock:
            self._rows.append(result_row(result))
            if not result.ok:
                self._failed += 1
                if result.traceback:
                    self._tracebacks[result.index] = result.traceback
            due = len(self._rows) >= FLUSH_EVERY_RESULTS or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
            if due:
                self._flush_locked()

    def add_rows(self, rows: list[ResultRow], failed: int, tracebacks: dict[int, str]) -> None:
        """Write results already in wire form now (the caller batches them: see worker/serial.py)."""
        with self._lock:
            self._rows.extend(rows)
            self._failed += failed
            self._tracebacks.update(tracebacks)
            self._flush_locked()

    def flush(self) -> None:
        """Write every buffered result now."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows:
            return
        rows, failed, tracebacks = self._rows, self._failed, self._tracebacks
        self._rows, self._failed, self._tracebacks = [], 0, {}
        batch_key = keys.batch_key(self._batch_id)
        stream = keys.results_key(self._batch_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(stream, encode_result_rows(self._worker, self._chunk, rows, tracebacks))  # type: ignore[arg-type]
        pipe.expire(stream, self._ttl)
        pipe.hincrby(batch_key, "done", len(rows))
        if failed:
            pipe.hincrby(batch_key, "failed", failed)
        # HINCRBY would recreate an expired record without a TTL; keep it expiring with its results.
        pipe.expire(batch_key, self._ttl)
        # RQ keeps this hash alive (and expiring) while the worker runs; we only count into it.
        pipe.hincrby(keys.RQ_WORKER_PREFIX + self._worker, keys.TASKS_DONE_FIELD, len(rows))
        pipe.execute()
