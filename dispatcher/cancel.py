"""Cancel a batch: its queued chunks never run, and each of their tasks gets a Cancelled result."""

from __future__ import annotations

import contextlib
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import redis
from rq.serializers import JSONSerializer

from common import keys
from common.cancel import CANCELLED_FIELD, cancelled_result
from common.errors import BatchNotFound
from common.routing import split_queue
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, decode_chunk, encode_results
from dispatcher.watch import BatchWatcher

# Take the chunk out of its queue and mark it canceled in one step, only if no worker has taken it:
# a crash between the two can then never leave a chunk that is neither queued nor resolved.
_TAKE_QUEUED = """
if redis.call('LREM', KEYS[1], 0, ARGV[1]) > 0 then
    redis.call('HSET', KEYS[2], 'status', 'canceled')
    return 1
end
return 0
"""


@dataclass
class CancelReport:
    """What a cancel did."""

    batch_id: str
    cancelled: list[TaskResult] = field(default_factory=list)
    """The Cancelled results published, one per task that had no result."""
    cancelled_chunks: list[int] = field(default_factory=list)
    left_chunks: int = 0
    """Chunks already running (some of their tasks have no result yet), which go on to their end."""
    finished_chunks: int = 0
    """Chunks whose every task already has a result: finished, or cancelled before."""


def cancel_batch(client: redis.Redis, settings: Settings, batch_id: str) -> CancelReport:
    """Mark the batch cancelled, pull its queued chunks off the queue, and publish a Cancelled
    result for each of their tasks (workers check the mark before running any chunk they took)."""
    batch_key = keys.batch_key(batch_id)
    record: dict[bytes, bytes] = client.hgetall(batch_key)  # type: ignore[assignment]
    if not record:
        raise BatchNotFound(f"no batch {batch_id!r} in Redis (wrong id, or its results expired)")
    client.hset(batch_key, CANCELLED_FIELD, f"{time.time():.3f}")
    if record.get(b"state") == b"submitted":
        client.hset(batch_key, "state", "cancelled")
    queue = record.get(b"queue", settings.queue.encode()).decode()
    settings = settings.with_overrides(queue=queue)
    watcher = BatchWatcher(client, settings, batch_id)
    watcher.load()
    while watcher.poll(None):  # learn which tasks already have a result
        pass
    take = client.register_script(_TAKE_QUEUED)
    report = CancelReport(batch_id)
    for chunk, chunk_queue in enumerate(chunk_queues(client, batch_id, queue, len(watcher.chunks))):
        job_id = keys.chunk_job_id(batch_id, chunk)
        if not take(keys=[keys.rq_queue_key(chunk_queue), keys.rq_job_key(job_id)], args=[job_id]):
            span = watcher.chunks[chunk]
            if span.done >= span.size:
                report.finished_chunks += 1
            else:
                report.left_chunks += 1
            continue
        report.cancelled_chunks.append(chunk)
        tasks = [t for t in _chunk_tasks(client, watcher, chunk) if not watcher.is_seen(t.index)]
        results = [cancelled_result(t, "dispatcher") for t in tasks]
        if results:
            _publish(client, settings, batch_id, chunk, results)
        report.cancelled.extend(results)
    return report


def chunk_queues(client: redis.Redis, batch_id: str, queue: str, chunks: int) -> list[str]:
    """The RQ queue of each chunk of a batch submitted to `queue`: its job's origin, which is `queue`
    or one of its task routes' queues (common.routing); `queue` where the job is gone or says otherwise."""
    pipe = client.pipeline(transaction=False)
    for chunk in range(chunks):
        pipe.hget(keys.rq_job_key(keys.chunk_job_id(batch_id, chunk)), "origin")
    origins: list[bytes | None] = pipe.execute() if chunks else []
    names = [origin.decode(errors="replace") if origin else queue for origin in origins]
    return [name if split_queue(name)[0] == queue else queue for name in names]


def cancel_unstarted_chunks(client: redis.Redis, watcher: BatchWatcher, queue: str, live: set[int]) -> list[TaskResult]:
    """Take the batch's queued chunks that hold no task of `live` off their queue (a batch submitted to
    `queue`); their tasks get Cancelled results, which are returned."""
    batch_id = watcher.batch_id
    queues = chunk_queues(client, batch_id, queue, len(watcher.chunks))
    fresh: list[TaskResult] = []
    for chunk, span in enumerate(watcher.chunks):
        if span.done >= span.size or any(i in live for i in range(span.first, span.last + 1)):
            continue
        job_id = keys.chunk_job_id(batch_id, chunk)
        if client.lrem(keys.rq_queue_key(queues[chunk]), 0, job_id):
            fresh.extend(watcher.resolve_chunk(chunk, "Cancelled", "cancelled before it ran"))
            client.delete(keys.rq_job_key(job_id))
    return fresh


def _publish(client: redis.Redis, settings: Settings, batch_id: str, chunk: int, results: list[TaskResult]) -> None:
    stream = keys.results_key(batch_id)
    pipe = client.pipeline(transaction=False)
    pipe.xadd(stream, encode_results("dispatcher", chunk, results))  # type: ignore[arg-type]
    pipe.expire(stream, settings.result_ttl)
    pipe.hincrby(keys.batch_key(batch_id), "done", len(results))
    pipe.hincrby(keys.batch_key(batch_id), "failed", len(results))
    pipe.execute()


def _chunk_tasks(client: redis.Redis, watcher: BatchWatcher, chunk: int) -> list[TaskSpec]:
    """The chunk's tasks from its job data; placeholders for its index range if that is unreadable."""
    raw: Any = client.hget(keys.rq_job_key(keys.chunk_job_id(watcher.batch_id, chunk)), "data")
    if raw is not None:
        with contextlib.suppress(Exception):
            with contextlib.suppress(zlib.error):
                raw = zlib.decompress(raw)
            _func, _instance, args, _kwargs = JSONSerializer.loads(raw)  # type: ignore[no-untyped-call]
            return decode_chunk(args[0]).tasks
    span = watcher.chunks[chunk]
    return [TaskSpec(index, "", [], {}, None) for index in range(span.first, span.last + 1)]
