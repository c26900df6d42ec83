"""Await a batch's results: blocking reads of its result stream, de-duplicated by task index,
plus detection of chunks that RQ gave up on or that vanished, so a wait never hangs forever."""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from common import keys
from common.cancel import CANCEL_REASON
from common.errors import BatchNotFound, PayloadError
from common.jobs import ABANDONMENT_HANDLERS, InertJob
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, decode_chunk, decode_results, encode_results
from dispatcher.lease import UNFINISHED_STATES, BatchRecord, settle
from dispatcher.status import route_queues

log = logging.getLogger("dispatcher")

STATUS_CHECKS_PER_SWEEP = 2000
"""Chunks whose job status one failure sweep reads (one pipelined round trip)."""

READ_COUNT = 50
"""Stream entries taken per read: each holds up to 2,000 results, and a reply is decoded whole, so
this bounds the dispatcher's memory when it falls behind (1000 let one read carry a million results)."""


@dataclass(slots=True)
class ChunkSpan:
    """Where a chunk's tasks sit in the batch, and how many of them have a result."""

    first: int
    last: int
    size: int
    done: int = 0


class BatchWatcher:
    """Follows one batch's result stream from the start; yields each task's result exactly once."""

    def __init__(self, client: redis.Redis, settings: Settings, batch_id: str) -> None:
        self.client = client
        self.settings = settings
        self.batch_id = batch_id
        self.stream = keys.results_key(batch_id)
        self.last_id = "0-0"
        self.total: int | None = None
        self.resolved = 0
        self.failed = 0
        self.chunks: list[ChunkSpan] = []
        self._seen = bytearray()
        self._last_check = time.monotonic()
        self._sweep_from = 0
        self.record: BatchRecord | None = None
        """The batch's record as a reattached reader last read it (None: this process submits it)."""
        self._queue = Queue(settings.queue, connection=client, serializer=JSONSerializer, job_class=InertJob)

    @property
    def complete(self) -> bool:
        """True when every task of a fully submitted batch has its result."""
        return self.total is not None and self.resolved >= self.total

    def add_chunk(self, span: ChunkSpan) -> None:
        """Tell the watcher about a chunk the submitter just enqueued."""
        self.chunks.append(span)

    def set_total(self, total: int) -> None:
        """Tell the watcher the batch is fully submitted with `total` tasks."""
        self.total = total

    def load(self) -> None:
        """Load the batch's record and chunk index from Redis (to reattach to a batch by id)."""
        record: dict[bytes, bytes] = self.client.hgetall(keys.batch_key(self.batch_id))  # type: ignore[assignment]
        if not record:
            raise BatchNotFound(f"no batch {self.batch_id!r} in Redis (wrong id, or its results expired)")
        queue = record.get(b"queue", b"").decode()
        if queue and queue != self._queue.name:
            self.settings = self.settings.with_overrides(queue=queue)
            self._queue = Queue(queue, connection=self.client, serializer=JSONSerializer, job_class=InertJob)
        self.refresh_total()

    def _load_chunks(self) -> None:
        key = keys.chunks_key(self.batch_id)
        spans: list[bytes] = self.client.lrange(key, len(self.chunks), -1)  # type: ignore[assignment]
        for raw in spans:
            first, last, size = (int(part) for part in raw.split(b":"))
            self.chunks.append(ChunkSpan(first, last, size))

    def refresh_total(self) -> None:
        """Re-read the batch record (for a reattached reader while the batch is still being submitted).

        If the submitting process is gone (its lease expired, or its pid on this host is dead) before
        it finished, the batch is recorded `abandoned` with what it managed to send, and the reader
        settles for that count instead of waiting forever (see dispatcher.lease.settle).
        """
        record = settle(self.client, self.batch_id)
        self.record = record
        if record.state not in UNFINISHED_STATES and record.total is not None:
            self.total = record.total
        self._load_chunks()

    def poll(self, block_ms: int | None) -> list[TaskResult]:
        """Block up to `block_ms` (None: do not block) for new results; return the ones not seen before."""
        reply: Any = self.client.xread({self.stream: self.last_id}, count=READ_COUNT, block=block_ms)
        return self.absorb(reply)

    def absorb(self, reply: Any) -> list[TaskResult]:
        """The results not seen before in the reply of an XREAD of this stream from `last_id`
        with count READ_COUNT (what `poll` sends; a caller may send it in its own pipeline)."""
        fresh: list[TaskResult] = []
        for _stream, entries in reply or ():
            self._absorb(entries, fresh)
        return fresh

    def _absorb(self, entries: list[tuple[bytes, dict[bytes, bytes]]], fresh: list[TaskResult]) -> None:
        for entry_id, fields in entries:
            self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                chunk, results = decode_results(fields)
            except (PayloadError, ValueError, TypeError, IndexError) as exc:
                log.warning("batch %s: ignoring malformed result entry %s: %s", self.batch_id, self.last_id, exc)
                continue
            span = self.chunks[chunk] if 0 <= chunk < len(self.chunks) else None
            if span is not None and span.last >= len(self._seen):
                self._seen.extend(bytes(span.last + 1 - len(self._seen)))
            before = len(fresh)
            failed = 0
            seen, known = self._seen, len(self._seen)
            for result in results:  # the per-result loop of a million-task batch: kept to the bone
                index = result.index
                if 0 <= index < known:
                    if seen[index]:
                        continue
                    seen[index] = 1
                elif not self._mark_seen(index):
                    continue
                else:
                    known = len(seen)
                fresh.append(result)
                if not result.ok:
                    failed += 1
            added = len(fresh) - before
            self.resolved += added
            self.failed += failed
            if span is not None:
                span.done += added

    def _mark_seen(self, index: int) -> bool:
        seen = self._seen
        if 0 <= index < len(seen) and not seen[index]:
            seen[index] = 1
            return True
        if index < 0:
            return False
        if index >= len(self._seen):
            self._seen.extend(bytes(max(index + 1 - len(self._seen), len(self._seen))))
        if self._seen[index]:
            return False
        self._seen[index] = 1
        return True

    def check_stalled(self, force: bool = False) -> list[TaskResult]:
        """Every few seconds: recover abandoned chunks, and resolve chunks that failed or vanished.

        Returns the results this produced (failures for tasks whose chunk is gone for good).
        """
        now = time.monotonic()
        if not force and now - self._last_check < self.settings.heartbeat_interval:
            return []
        self._last_check = now
        self._recover_abandoned()
        if self.total is None:
            self.refresh_total()
        outstanding = self._next_outstanding()
        if not outstanding:
            return []
        with self.client.pipeline(transaction=True) as pipe:
            for chunk in outstanding:
                pipe.hget(keys.rq_job_key(keys.chunk_job_id(self.batch_id, chunk)), "status")
            pipe.xrange(self.stream, min=f"({self.last_id}", max="+")
            replies = pipe.execute()
        fresh: list[TaskResult] = []
        self._absorb(replies[-1], fresh)
        for chunk, status in zip(outstanding, replies[:-1], strict=True):
            span = self.chunks[chunk]
            if span.done >= span.size:
                continue
            if status == b"failed":
                fresh.extend(self._resolve_chunk(chunk, "ChunkFailed", self._failure_reason(chunk)))
            elif status is None:
                reason = "its job vanished from Redis (was Redis restarted without persistence?)"
                fresh.extend(self._resolve_chunk(chunk, "TaskLost", reason))
            elif status == b"canceled":  # taken off the queue by `dispatcher cancel`
                fresh.extend(self._resolve_chunk(chunk, "Cancelled", CANCEL_REASON))
        return fresh

    def _next_outstanding(self) -> list[int]:
        """Up to STATUS_CHECKS_PER_SWEEP chunks still missing results, round-robin from the last sweep,
        so a batch of many small chunks costs Redis a bounded amount of work every few seconds."""
        count = len(self.chunks)
        picked: list[int] = []
        for step in range(count):
            chunk = (self._sweep_from + step) % count
            span = self.chunks[chunk]
            if span.done < span.size:
                picked.append(chunk)
                if len(picked) >= STATUS_CHECKS_PER_SWEEP:
                    break
        self._sweep_from = (picked[-1] + 1) % count if picked else 0
        return picked

    def _recover_abandoned(self) -> None:
        """Run RQ's started-registry cleanup now, on the batch's queue and each of its task routes'
        queues (common.routing): chunks of dead workers go back to the queue they came from."""
        for name in route_queues(self.client, self._queue.name):
            queue = self._queue if name == self._queue.name else self._route_queue(name)
            registry = StartedJobRegistry(queue=queue, job_class=InertJob, serializer=JSONSerializer)
            try:
                registry.cleanup(exception_handlers=ABANDONMENT_HANDLERS)
            except redis.RedisError:
                raise
            except Exception as exc:  # a planted or damaged job must not stop the dispatcher
                log.warning("started-registry cleanup of %s failed: %s", name, exc)

    def _route_queue(self, name: str) -> Queue:
        return Queue(name, connection=self.client, serializer=JSONSerializer, job_class=InertJob)

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

    def resolve_chunk(self, chunk: int, error_type: str, reason: str) -> list[TaskResult]:
        """Give every task of the chunk still without a result a failure (e.g. a cancelled chunk)."""
        return self._resolve_chunk(chunk, error_type, reason)

    def _resolve_chunk(self, chunk: int, error_type: str, reason: str) -> list[TaskResult]:
        """Publish a failure for every task of the chunk that has no result, and return them."""
        tasks = self._chunk_tasks(chunk)
        failures = [
            TaskResult(t.index, t.task, t.args, t.kwargs, t.id, False, None, error_type, reason, "dispatcher", 0.0)
            for t in tasks
            if not self._is_seen(t.index)
        ]
        if failures:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.stream, encode_results("dispatcher", chunk, failures))  # type: ignore[arg-type]
            pipe.expire(self.stream, self.settings.result_ttl)
            pipe.hincrby(keys.batch_key(self.batch_id), "done", len(failures))
            pipe.hincrby(keys.batch_key(self.batch_id), "failed", len(failures))
            pipe.execute()
        fresh: list[TaskResult] = []
        span = self.chunks[chunk]
        for result in failures:
            if self._mark_seen(result.index):
                fresh.append(result)
                self.resolved += 1
                self.failed += 1
                span.done += 1
        span.done = max(span.done, span.size)
        return fresh

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
        span = self.chunks[chunk]
        return [TaskSpec(index, "", [], {}, None) for index in range(span.first, span.last + 1)]

    def is_seen(self, index: int) -> bool:
        """Whether task `index` already has its result."""
        return self._is_seen(index)

    def _is_seen(self, index: int) -> bool:
        return index < len(self._seen) and bool(self._seen[index])
