"""Chunk jobs written as RQ's enqueue writes them, from a template, in one script call per flush.

RQ's `Queue.enqueue_many` builds a Job object per chunk, serializes it through `Job.to_dict`,
zlib-compresses the data and sends about ten commands per job; for chunk size 1 that was most of
the dispatcher's CPU per call. The hash written here has the same fields and values that
`Queue.enqueue_many` + `Job.to_dict` write for our jobs (tests compare the two field by field and
run the jobs through `Job.fetch`, `rq info` and real workers), so RQ's registries, retries, crash
recovery, `rq info` and rq-dashboard read them like any other job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from common import keys
from common.durability import ReplicaWait
from common.jobdata import encode_job_data
from common.settings import Settings
from common.wire import JSONValue

RQ_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""rq.utils.utcformat's format, which Job.restore parses back."""

JOBS_PER_SCRIPT = 1000
"""Chunk jobs one script call writes: bounds how long one call holds Redis and its argument count."""

# One call writes, in this order: the batch's `sent` and `read` counts and the submitter lease (so a
# reader that outlives the submitter knows what reached Redis), then per job what RQ's Queue._enqueue_async_job
# sends (the job hash with status queued, EXPIRE ttl), the chunk index, and the queue push. RQ also
# EXPIREs the job's dependents/dependencies keys, which our jobs never have. What is the same for
# every job of a batch is written into the script text, so a call carries only what changes.
#   KEYS: batch hash, submitter lease, chunk index list, RQ's set of queues, queue list, then each job's key
# A batch a reader has found abandoned (its lease lapsed) takes no more jobs: its total is settled.
#   ARGV: sent, lease holder, timestamp, read, read_all, then (job id, chunk span, description, data) per job
_ENQUEUE = """
local unpack = table.unpack or unpack
if redis.call('HGET', KEYS[1], 'state') == 'abandoned' then
    return redis.error_reply('ABANDONED batch found abandoned by a reader (its submitter lease lapsed)')
end
redis.call('HSET', KEYS[1], 'sent', ARGV[1], 'read', ARGV[4], 'read_all', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'EX', {lease})
local jobs = #KEYS - 5
if jobs == 0 then return 0 end
local fields = {{{fields}, 'created_at', ARGV[3], 'enqueued_at', ARGV[3], 'description', '', 'data', ''}}
local n = #fields
local ids, spans = {{}}, {{}}
local at = 5
for j = 1, jobs do
    ids[j] = ARGV[at + 1]
    spans[j] = ARGV[at + 2]
    fields[n - 2] = ARGV[at + 3]
    fields[n] = ARGV[at + 4]
    redis.call('HSET', KEYS[5 + j], unpack(fields))
    redis.call('EXPIRE', KEYS[5 + j], {ttl})
    at = at + 4
end
redis.call('RPUSH', KEYS[3], unpack(spans))
redis.call('EXPIRE', KEYS[3], {ttl})
redis.call('SADD', KEYS[4], KEYS[5])
redis.call('RPUSH', KEYS[5], unpack(ids))
return jobs
"""


_EMPTY_JOB_FIELDS = (
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "started_at",
    "ended_at",
    "last_heartbeat",
    "worker_name",
    "group_id",
)
"""Job.to_dict's fields that are empty for a job just enqueued, in the order RQ writes them."""

Stage = Callable[[Pipeline], None]
"""Adds commands to a pipeline that a flush sends together with its script calls."""

_LUA_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:[]")


def _lua_string(value: str | int) -> str:
    """A Lua string literal of `value`: bytes other than a few plain ones are escaped, so no text
    (a queue name, say) can end the literal or change the script."""
    return "'" + "".join(chr(b) if b in _LUA_PLAIN else f"\\{b:03d}" for b in str(value).encode()) + "'"


@dataclass(slots=True)
class ChunkJob:
    """One chunk as its RQ job: id, the `first:last:count` entry of the batch's chunk index, and data."""

    job_id: str
    span: str
    description: str
    data: bytes
    tasks: int


class ChunkJobWriter:
    """Writes chunk jobs of one batch with the fields RQ writes for `enqueue_many` of our jobs,
    into `queue` (default: the settings' queue; a route's queue, see common.routing)."""

    def __init__(self, settings: Settings, batch_id: str, queue: str | None = None) -> None:
        self.batch_id = batch_id
        self.ttl = settings.result_ttl
        self.replica_wait = ReplicaWait.from_settings(settings)
        """With the durable option: the WAIT that follows each send's script calls."""
        self.queue = queue or settings.queue
        self.queue_key = keys.rq_queue_key(self.queue)
        self._keys = [
            keys.batch_key(batch_id),
            keys.submitter_key(batch_id),
            keys.chunks_key(batch_id),
            keys.RQ_QUEUES,
            self.queue_key,
        ]
        # Job.to_dict's fields for a job made by Queue.prepare_data(timeout=-1, result_ttl=0,
        # failure_ttl=ttl, ttl=ttl, retry=Retry(max=job_retries)) and enqueued (status, origin;
        # created_at and enqueued_at are the script's timestamp); the empty ones are written by RQ
        # too, and restore reads them as absent.
        fields: list[str | int] = [part for name in _EMPTY_JOB_FIELDS for part in (name, "")]
        if settings.job_retries:
            fields += ["retries_left", settings.job_retries, "retry_intervals", json.dumps([0])]
        fields += ["origin", self.queue, "timeout", -1, "result_ttl", 0, "failure_ttl", self.ttl]
        fields += ["status", "queued", "ttl", self.ttl]
        self.script = _ENQUEUE.format(
            lease=int(settings.submitter_lease), ttl=int(self.ttl), fields=", ".join(map(_lua_string, fields))
        )
        self.sha = hashlib.sha1(self.script.encode()).hexdigest()

    def job(self, chunk: int, first: int, last: int, count: int, payload: JSONValue) -> ChunkJob:
        """Encode one chunk's job."""
        return ChunkJob(
            keys.chunk_job_id(self.batch_id, chunk),
            f"{first}:{last}:{count}",
            f"batch {self.batch_id} chunk {chunk} ({count} tasks)",
            encode_job_data(payload),
            count,
        )

    def calls(
        self, sent_before: int, holder: str | int, jobs: Sequence[ChunkJob], read: int = 0, read_all: bool = False
    ) -> list[list[Any]]:
        """The script calls (EVALSHA) that write `jobs` after `sent_before` tasks, each also setting
        the batch's `sent` count to what it brings the batch to, its `read` count (input lines the
        dispatcher has read, `read_all` once that is the whole input), and renewing the lease."""
        stamp = datetime.now(timezone.utc).strftime(RQ_TIMESTAMP_FORMAT)
        prefix = keys.RQ_JOB_PREFIX
        calls: list[list[Any]] = []
        sent = sent_before
        for start in range(0, max(1, len(jobs)), JOBS_PER_SCRIPT):
            group = jobs[start : start + JOBS_PER_SCRIPT]
            sent += sum(job.tasks for job in group)
            call: list[Any] = ["EVALSHA", self.sha, len(self._keys) + len(group), *self._keys]
            call += [prefix + job.job_id for job in group]
            call += (sent, holder, stamp, max(read, sent), 1 if read_all else 0)
            for job in group:
                call += (job.job_id, job.span, job.description, job.data)
            calls.append(call)
        return calls

    def as_text(self, call: list[Any]) -> list[Any]:
        """The same script call with the script sent by text (EVAL) instead of by hash (a call
        already sent by text, maybe another queue's, is kept as it is)."""
        return call if call[0] == "EVAL" else ["EVAL", self.script, *call[2:]]

    def send(
        self, client: redis.Redis, calls: list[list[Any]], before: Stage | None = None, after: Stage | None = None
    ) -> list[Any]:
        """Run `calls`, with what `before` and `after` add around them, in one round trip; return
        the replies of the commands `after` added.

        Alone, the script is sent by hash: Redis that does not know it (restarted, SCRIPT FLUSH)
        answers NOSCRIPT having run nothing, and the call is repeated with the script's text, which
        caches it again. In a pipeline it is sent by text, so that a NOSCRIPT can never leave the
        rest of the pipeline done without it (`after` may be a blocking read waiting on its jobs).
        With the durable option a WAIT follows the script calls (common.durability).
        """
        wait = self.replica_wait
        if before is None and after is None and len(calls) == 1 and wait is None:
            try:
                client.execute_command(*calls[0])  # type: ignore[no-untyped-call]
            except NoScriptError:
                client.execute_command(*self.as_text(calls[0]))  # type: ignore[no-untyped-call]
            return []
        pipe = client.pipeline(transaction=False)
        if before is not None:
            before(pipe)
        for call in calls:
            pipe.execute_command(*self.as_text(call))  # type: ignore[no-untyped-call]
        if wait is not None:  # before `after`, which may be a blocking read
            pipe.execute_command(*wait.command)  # type: ignore[no-untyped-call]
        mine = len(pipe)
        if after is not None:
            after(pipe)
        replies: list[Any] = pipe.execute()
        if wait is not None:
            wait.check(replies[mine - 1], f"batch {self.batch_id}: chunk jobs enqueued")
        return replies[mine:]
