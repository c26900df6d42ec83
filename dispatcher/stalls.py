"""Stall recovery for a watched batch: re-queue the chunks of dead workers, and resolve chunks that
RQ gave up on, that were cancelled or that vanished, so a wait never hangs forever."""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from typing import Any, Protocol

import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from common import keys
from common.cancel import CANCEL_REASON
from common.jobs import ABANDONMENT_HANDLERS, InertJob
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, decode_chunk, encode_results
from dispatcher.chunking import ChunkSpan
from dispatcher.status import route_queues

log = logging.getLogger("dispatcher")

STATUS_CHECKS_PER_SWEEP = 2000
"""Chunks whose job status one failure sweep reads (one pipelined round trip)."""

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
"""Entries of the result stream as XRANGE returns them."""


class Watched(Protocol):
    """What stall recovery reads of the batch's watcher, and how it hands it results
    (dispatcher.watch.BatchWatcher)."""

    @property
    def settings(self) -> Settings:
        """The watcher's settings (their queue is the batch's)."""

    @property
    def chunks(self) -> list[ChunkSpan]:
        """The batch's chunks, in chunk order."""

    @property
    def total(self) -> int | None:
        """The batch's task count once it is fully submitted."""

    @property
    def last_id(self) -> str:
        """The id of the last stream entry read."""

    def refresh_total(self) -> None:
        """Re-read the batch record and its chunk index."""

    def absorb_entries(self, entries: StreamEntries) -> list[TaskResult]:
        """The results of stream entries read after `last_id` that were not seen before."""

    def is_seen(self, index: int) -> bool:
        """Whether task `index` already has its result."""

    def take_failures(self, chunk: int, failures: list[TaskResult]) -> list[TaskResult]:
        """Count failures published for `chunk`; the ones not seen before. The chunk is then done."""


class StallRecovery:
    """Every few seconds (or when forced), the checks that keep a wait from hanging on a lost chunk."""

    def __init__(self, client: redis.Redis, batch_id: str, watched: Watched) -> None:
        self.client = client
        self.batch_id = batch_id
        self.stream = keys.results_key(batch_id)
        self.watched = watched
        self._last_check = time.monotonic()
        self._sweep_from = 0
        self._queues: dict[str, Queue] = {}

    def check(self, force: bool = False) -> list[TaskResult]:
        """Recover abandoned chunks, and resolve chunks that failed or vanished (at most every
        heartbeat interval unless `force`). Returns the results this produced (failures for tasks
        whose chunk is gone for good, and results read from the stream meanwhile)."""
        watched = self.watched
        now = time.monotonic()
        if not force and now - self._last_check < watched.settings.heartbeat_interval:
            return []
        self._last_check = now
        self._recover_abandoned()
        if watched.total is None:
            watched.refresh_total()
        outstanding = self._next_outstanding()
        if not outstanding:
            return []
        with self.client.pipeline(transaction=True) as pipe:
            for chunk in outstanding:
                pipe.hget(keys.rq_job_key(keys.chunk_job_id(self.batch_id, chunk)), "status")
            pipe.xrange(self.stream, min=f"({watched.last_id}", max="+")
            replies = pipe.execute()
        fresh = watched.absorb_entries(replies[-1])
        for chunk, status in zip(outstanding, replies[:-1], strict=True):
            span = watched.chunks[chunk]
            if span.done >= span.size:
                continue
            if status == b"failed":
                fresh.extend(self.resolve_chunk(chunk, "ChunkFailed", self._failure_reason(chunk)))
            elif status is None:
                reason = "its job vanished from Redis (was Redis restarted without persistence?)"
                fresh.extend(self.resolve_chunk(chunk, "TaskLost", reason))
            elif status == b"canceled":  # taken off the queue by `dispatcher cancel`
                fresh.extend(self.resolve_chunk(chunk, "Cancelled", CANCEL_REASON))
        return fresh

    def resolve_chunk(self, chunk: int, error_type: str, reason: str) -> list[TaskResult]:
        """Publish a failure for every task of the chunk that has no result, and return them."""
        watched = self.watched
        failures = [
            TaskResult(t.index, t.task, t.args, t.kwargs, t.id, False, None, error_type, reason, "dispatcher", 0.0)
            for t in self._chunk_tasks(chunk)
            if not watched.is_seen(t.index)
        ]
        if failures:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.stream, encode_results("dispatcher", chunk, failures))  # type: ignore[arg-type]
            pipe.expire(self.stream, watched.settings.result_ttl)
            pipe.hincrby(keys.batch_key(self.batch_id), "done", len(failures))
            pipe.hincrby(keys.batch_key(self.batch_id), "failed", len(failures))
            pipe.execute()
        return watched.take_failures(chunk, failures)

    def _next_outstanding(self) -> list[int]:
        """Up to STATUS_CHECKS_PER_SWEEP chunks still missing results, round-robin from the last sweep,
        so a batch of many small chunks costs Redis a bounded amount of work every few seconds."""
        chunks = self.watched.chunks
        count = len(chunks)
        picked: list[int] = []
        for step in range(count):
            chunk = (self._sweep_from + step) % count
            span = chunks[chunk]
            if span.done < span.size:
                picked.append(chunk)
                if len(picked) >= STATUS_CHECKS_PER_SWEEP:
                    break
        self._sweep_from = (picked[-1] + 1) % count if picked else 0
        return picked

    def _recover_abandoned(self) -> None:
        """Run RQ's started-registry cleanup now, on the batch's queue and each of its task routes'
        queues (common.routing): chunks of dead workers go back to the queue they came from."""
        for name in route_queues(self.client, self.watched.settings.queue):
            registry = StartedJobRegistry(queue=self._queue(name), job_class=InertJob, serializer=JSONSerializer)
            try:
                registry.cleanup(exception_handlers=ABANDONMENT_HANDLERS)
            except redis.RedisError:
                raise
            except Exception as exc:  # a planted or damaged job must not stop the dispatcher
                log.warning("started-registry cleanup of %s failed: %s", name, exc)

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue(name, connection=self.client, serializer=JSONSerializer, job_class=InertJob)
            self._queues[name] = queue
        return queue

    def _failure_reason(self, chunk: int) -> str:
        try:
            job = InertJob.fetch(
                keys.chunk_job_id(self.batch_id, chunk), connection=self.client, serializer=JSONSerializer
            )
            result = job.latest_result()
            text = (result.exc_string or "").strip().splitlines() if result else []
        except Exception as exc:
            return f"its chunk failed and the reason could not be read ({exc})"
        return f"its chunk failed after all retries: {text[-1] if text else 'no reason recorded'}"

    def _chunk_tasks(self, chunk: int) -> list[TaskSpec]:
        """The chunk's tasks from its job in Redis; placeholders for its index range if the job is gone."""
        raw: Any = self.client.hget(keys.rq_job_key(keys.chunk_job_id(self.batch_id, chunk)), "data")
        if raw is not None:
            try:
                with contextlib.suppress(zlib.error):
                    raw = zlib.decompress(raw)
                _func, _instance, args, _kwargs = JSONSerializer.loads(raw)  # type: ignore[no-untyped-call]
                return decode_chunk(args[0]).tasks
            except Exception as exc:
                log.warning("batch %s chunk %d: unreadable job data: %s", self.batch_id, chunk, exc)
        span = self.watched.chunks[chunk]
        return [TaskSpec(index, "", [], {}, None) for index in range(span.first, span.last + 1)]
