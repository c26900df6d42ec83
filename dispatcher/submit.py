"""Record a batch in Redis and enqueue its chunks as RQ jobs, one round trip per flush.

Kept whole, though just over 250 lines: one class whose counters (tasks, sent, chunks, pending) every method shares.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import redis
from redis.client import Pipeline

from common import keys
from common.durability import ReplicaWait
from common.errors import BatchIncomplete
from common.routing import Route, queue_of, route_of
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, encode_chunk, encode_results
from dispatcher.enqueue import ChunkJob, ChunkJobWriter, Stage
from dispatcher.lease import LeaseKeeper, holder

PIPELINE_TASKS = 20_000
"""Tasks buffered before one pipelined enqueue round trip (once the batch is under way)."""
BATCH_INDEX_LIMIT = 1000
"""How many recent batches the index keeps."""

_FINISH = """
if redis.call('HGET', KEYS[1], 'state') == 'abandoned' then return -1 end
local total = ARGV[2]
if ARGV[1] == 'aborted' then total = redis.call('HGET', KEYS[1], 'sent') or '0' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'total', total, 'chunks', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
redis.call('DEL', KEYS[2])
return tonumber(total)
"""
# A batch a reader already found abandoned keeps that verdict and the total it recorded. An aborted
# batch's total is the `sent` that the enqueue script calls wrote: a send that failed halfway through
# a flush may have enqueued some of its calls.


def new_batch_id() -> str:
    """A fresh batch id (RQ job ids allow only [A-Za-z0-9_-]; we use hex)."""
    return uuid.uuid4().hex[:16]


class BatchSubmitter:
    """Writes one batch: its record, its chunk jobs (RQ's job hashes, see dispatcher.enqueue) and the chunk index."""

    def __init__(
        self, client: redis.Redis, settings: Settings, batch_id: str, chunk_size: int, first_flush_chunks: int = 1
    ) -> None:
        self.client = client
        self.settings = settings
        self.batch_id = batch_id
        self.chunk_size = chunk_size
        self._writer = ChunkJobWriter(settings, batch_id)
        self._writers: dict[Route, ChunkJobWriter] = {None: self._writer}
        self.chunks = 0
        self.tasks = 0
        self.sent = 0
        """Tasks (and failed input lines) that reached Redis."""
        self.read_ahead = 0
        """Input lines read ahead of the tasks handed to this submitter (to learn the batch's size)."""
        self.read_all = False
        """True once the whole input has been read (its size is known)."""
        self._pending_chunks: list[list[TaskSpec]] = []
        self._pending_bad: list[TaskResult] = []
        self._pending_tasks = 0
        # The first pipeline carries one chunk per live worker process and each pipeline doubles up
        # to PIPELINE_TASKS, so every worker starts while the rest is still being read and encoded,
        # none waiting for a second round trip (docs/performance.md, items 7 and 16).
        self._flush_at = min(PIPELINE_TASKS, chunk_size * max(1, first_flush_chunks))
        self._lease_renewed = 0.0
        self._lease = LeaseKeeper(client, settings, batch_id)

    def start(self, source: str) -> None:
        """Record the batch as being submitted."""
        created = time.time()
        ttl = self.settings.result_ttl
        pipe = self.client.pipeline(transaction=False)
        batch_key = keys.batch_key(self.batch_id)
        pipe.hset(
            batch_key,
            mapping={
                "state": "submitting",
                "created": f"{created:.3f}",
                "queue": self.settings.queue,
                "chunk_size": self.chunk_size,
                "source": source[:200],
                "done": 0,
                "failed": 0,
            },
        )
        pipe.expire(batch_key, ttl)
        pipe.set(keys.submitter_key(self.batch_id), holder(), ex=self.settings.submitter_lease)
        self._lease_renewed = time.monotonic()
        pipe.zadd(keys.BATCHES, {self.batch_id: created})
        pipe.zremrangebyrank(keys.BATCHES, 0, -BATCH_INDEX_LIMIT - 1)
        pipe.execute()
        self._lease.start()

    def add_chunk(self, tasks: list[TaskSpec], auto_flush: bool = True) -> None:
        """Queue one chunk of tasks, sent with the next flush (which this may start, unless not `auto_flush`).

        The chunk goes to the queue of its tasks' route (common.routing): its tasks hold at most one
        name outside the built-in catalogue.
        """
        self._pending_chunks.append(tasks)
        self._pending_tasks += len(tasks)
        self.tasks += len(tasks)
        if auto_flush and self._pending_tasks >= self._flush_at:
            self.flush()
            self._flush_at = min(PIPELINE_TASKS, self._flush_at * 2)

    def add_bad(self, result: TaskResult) -> None:
        """Record the failed result of an input line that never became a task."""
        self._pending_bad.append(result)
        self.tasks += 1

    def keep_alive(self) -> None:
        """Renew the submitter lease now if a third of it has passed (a thread renews it anyway,
        whatever the caller is blocked on; this only spares a caller that is waiting anyway)."""
        lease = self.settings.submitter_lease
        if self._lease_renewed >= 0 and time.monotonic() - self._lease_renewed >= lease / 3:
            self.client.set(keys.submitter_key(self.batch_id), holder(), ex=lease, xx=True)
            self._lease_renewed = time.monotonic()

    def flush(self, after: Stage | None = None) -> list[Any]:
        """Send everything pending in one round trip, with the commands `after` adds to it (their
        replies are returned: a caller can wait for results in the round trip that enqueues).

        The batch record's `sent` count and the submitter lease are written by the same script call
        as the chunk jobs, so a reader that outlives this process knows exactly how many tasks ever
        reached Redis.
        """
        if not self._pending_chunks and not self._pending_bad and after is None:
            return []
        calls = self.pending_calls()
        writer = self._writer
        if any(call[1] != writer.sha for call in calls):  # chunks of several routes: every script by text
            calls = [self.as_text(call) for call in calls]
        try:
            replies = writer.send(self.client, calls, self._stage_bad if self._pending_bad else None, after)
        except redis.ResponseError as exc:
            if str(exc).startswith("ABANDONED"):
                raise self._found_abandoned() from None
            raise
        self._pending_bad.clear()
        self.mark_sent()
        return replies

    def pending_calls(self) -> list[list[Any]]:
        """The script calls (EVALSHA form, see ChunkJobWriter) that enqueue the pending chunks and
        set `sent` to include them; call `mark_sent` once Redis has run them all. Pending bad-input
        results are not in them: only `flush` sends those.

        Each run of consecutive chunks of one route is written by that route's writer (its queue),
        in chunk order, so the chunk index stays in chunk order."""
        ttl = self.settings.result_ttl
        sent = self.tasks - self._pending_tasks
        lease_holder = holder()
        read = max(self.tasks, self.read_ahead)
        calls: list[list[Any]] = []
        writer, jobs = self._writer, list[ChunkJob]()
        for offset, tasks in enumerate(self._pending_chunks):
            chunk = self.chunks + offset
            route_writer = self._writer_for(route_of(tasks[0].task))
            if route_writer is not writer and jobs:
                calls += writer.calls(sent, lease_holder, jobs, read, self.read_all)
                sent += sum(job.tasks for job in jobs)
                jobs = []
            writer = route_writer
            payload = encode_chunk(self.batch_id, chunk, ttl, tasks)
            jobs.append(writer.job(chunk, tasks[0].index, tasks[-1].index, len(tasks), payload))
        return calls + writer.calls(sent, lease_holder, jobs, read, self.read_all)

    def _writer_for(self, route: Route) -> ChunkJobWriter:
        writer = self._writers.get(route)
        if writer is None:
            writer = self._writers[route] = ChunkJobWriter(
                self.settings, self.batch_id, queue_of(self.settings.queue, route)
            )
        return writer

    def mark_sent(self) -> None:
        """Record that the calls from `pending_calls` ran: their chunks are numbered and not pending."""
        self._lease_renewed = time.monotonic()
        # Counted once Redis has accepted them: a failed send leaves the numbering where Redis has it.
        self.chunks += len(self._pending_chunks)
        self._pending_chunks.clear()
        self._pending_tasks = 0
        self.sent = self.tasks - len(self._pending_bad)

    @property
    def replica_wait(self) -> ReplicaWait | None:
        """The WAIT that follows each enqueue with the durable option (common.durability)."""
        return self._writer.replica_wait

    def as_text(self, call: list[Any]) -> list[Any]:
        """A call from `pending_calls` with the script sent by text (for a pipeline that must not meet
        NOSCRIPT halfway)."""
        writer = next((w for w in self._writers.values() if w.sha == call[1]), self._writer)
        return writer.as_text(call)

    def _stage_bad(self, pipe: Pipeline) -> None:
        """Add the pending bad-input results to `pipe`, ahead of the chunk jobs."""
        stream = keys.results_key(self.batch_id)
        pipe.xadd(stream, encode_results("dispatcher", -1, self._pending_bad))  # type: ignore[arg-type]
        pipe.expire(stream, self.settings.result_ttl)
        pipe.hincrby(keys.batch_key(self.batch_id), "done", len(self._pending_bad))
        pipe.hincrby(keys.batch_key(self.batch_id), "failed", len(self._pending_bad))

    def discard_pending(self) -> None:
        """Drop the chunks not sent yet (a batch refused midway must not enqueue them on finish)."""
        self.tasks -= self._pending_tasks + len(self._pending_bad)
        self._pending_chunks.clear()
        self._pending_bad.clear()
        self._pending_tasks = 0

    def finish(self, state: str = "submitted") -> None:
        """Send what is pending and mark the batch fully submitted (or aborted), with its total."""
        self.flush()
        self._lease.stop()
        self._lease_renewed = -1.0  # finished: never renew the lease again
        if not self._write_final(state, ""):
            raise self._found_abandoned()

    def _found_abandoned(self) -> BatchIncomplete:
        return BatchIncomplete(
            f"batch {self.batch_id} was found abandoned by a reader while this process could not renew its lease "
            f"(cut off from Redis?); it holds the {self.sent} task(s) sent before that, and takes no more"
        )

    def abort(self, reason: str) -> str | None:
        """Stop submitting: drop what is not sent yet and record the batch `aborted` (with `reason`)
        and its total, what was sent. Returns why the record could not be written, if it could not;
        the lease is dropped even then, so the next reader marks the batch abandoned."""
        self.discard_pending()
        self._lease.stop()
        self._lease_renewed = -1.0
        try:
            self._write_final("aborted", reason)
        except (redis.RedisError, OSError) as exc:
            # DEL is allowed even when Redis is out of memory; if Redis is unreachable, the lease runs out.
            with contextlib.suppress(redis.RedisError, OSError):
                self.client.delete(keys.submitter_key(self.batch_id))
            return f"{type(exc).__name__}: {exc}"
        return None

    def _write_final(self, state: str, reason: str) -> bool:
        """Record the final state and total and drop the lease; False if a reader found the batch abandoned."""
        batch_key, lease_key = keys.batch_key(self.batch_id), keys.submitter_key(self.batch_id)
        total = int(self.client.eval(_FINISH, 2, batch_key, lease_key, state, self.sent, self.chunks, reason[:200]))
        if total < 0:
            return False
        self.sent = total
        return True
