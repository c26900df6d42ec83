"""Every Redis key name, prefix and job id this system uses; RQ's key names are built from RQ's own
key attributes, so that RQ's `RQ_KEY_PREFIX` (RQ 3) moves ours with them."""

from __future__ import annotations

import re

import rq.executions
from rq.executions import Execution, ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.worker import BaseWorker
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

from common.rqcompat import RQ3

PREFIX = "dw:"
"""Prefix of every key of ours, so they never collide with RQ's `rq:` keys."""

BATCHES = PREFIX + "batches"
"""Sorted set of batch ids scored by creation time: the recent-batches index."""

CHUNK_FUNCTION = "worker.chunk.run_chunk"
"""Dotted path of the only job function workers execute; the dispatcher names it, never imports it."""

WORKER_FIELD_PREFIX = "dw_"
"""Prefix of the fields a worker adds to RQ's own worker hash (slots, tasks, host)."""

TASKS_DONE_FIELD = WORKER_FIELD_PREFIX + "tasks_done"
"""Field of a worker's RQ hash counting the tasks it has finished (one HINCRBY per result flush)."""

RQ_WORKER_PREFIX: str = BaseWorker.redis_worker_namespace_prefix
"""RQ's key prefix of a worker's hash (RQ owns the hash; we only add `dw_` fields to it)."""

RQ_WORKERS: str = REDIS_WORKER_KEYS
"""RQ's set of every registered worker's key."""

RQ_QUEUES: str = Queue.redis_queues_keys
"""RQ's set of every queue's key."""

RQ_PREFIX: str = RQ_QUEUES.removesuffix("queues")
"""The prefix of every RQ key, colon included (`rq:`; RQ 3 takes another from RQ_KEY_PREFIX)."""

RQ_JOB_PREFIX: str = Job.redis_job_namespace_prefix
"""RQ's key prefix of a job's hash."""

RQ_QUEUE_PREFIX: str = Queue.redis_queue_namespace_prefix
"""RQ's key prefix of a queue's list."""

_EXECUTION_PREFIX: str = Execution("e", "j", None).key.removesuffix("j:e")  # type: ignore[arg-type]


def rq_job_key(job_id: str) -> str:
    """RQ's hash of one job."""
    return RQ_JOB_PREFIX + job_id


def rq_queue_key(queue: str) -> str:
    """RQ's list of one queue's waiting job ids."""
    return RQ_QUEUE_PREFIX + queue


def rq_intermediate_key(queue: str) -> str:
    """RQ's list of the job ids a single-queue worker has taken from `queue` but not yet started."""
    return str(IntermediateQueue.get_intermediate_queue_key(rq_queue_key(queue)))


def rq_started_key(queue: str) -> str:
    """RQ's started-job registry (sorted set of `job id:execution id`) of one queue."""
    return str(StartedJobRegistry.key_template.format(queue))


def rq_results_key(job_id: str) -> str:
    """RQ's stream of one job's results (Result.get_key)."""
    return str(Result.get_key(job_id))  # type: ignore[no-untyped-call,unused-ignore]


def rq_failed_key(queue: str) -> str:
    """RQ's failed-job registry (sorted set of job ids) of one queue."""
    return str(FailedJobRegistry.key_template.format(queue))


def rq_worker_key(name: str) -> str:
    """RQ's hash of one worker."""
    return RQ_WORKER_PREFIX + name


def rq_workers_by_queue_key(queue: str) -> str:
    """RQ's set of the keys of the workers serving one queue."""
    return WORKERS_BY_QUEUE_KEY % queue


def rq_execution_key(job_id: str, execution_id: str) -> str:
    """RQ's hash of one execution of a job (Execution.key, without building an Execution)."""
    return f"{_EXECUTION_PREFIX}{job_id}:{execution_id}"


def rq_execution_key_of_entry(entry: str) -> str:
    """RQ's hash of the execution a started-registry entry (`job id:execution id`) names."""
    return _EXECUTION_PREFIX + entry


def rq_executions_key(job_id: str) -> str:
    """RQ's sorted set of the live executions of one job."""
    return str(ExecutionRegistry.key_template.format(job_id))


def rq_worker_executions_key(name: str) -> str | None:
    """RQ 3's set of the executions one worker is running; None on RQ 2, which has no such set."""
    if not RQ3:
        return None
    return str(getattr(rq.executions, "WORKER_EXECUTIONS_KEY_TEMPLATE").format(name))  # noqa: B009 - RQ 3 only


BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
"""Batch ids: RQ job ids allow only [A-Za-z0-9_-], and '-' separates batch from chunk."""


def batch_key(batch_id: str) -> str:
    """Hash describing one batch: state, total, chunk count, created time, settings."""
    return f"{PREFIX}batch:{batch_id}"


def results_key(batch_id: str) -> str:
    """Stream of one batch's results, one entry per published group of task results."""
    return f"{PREFIX}batch:{batch_id}:results"


def chunks_key(batch_id: str) -> str:
    """List of a batch's chunks in chunk order, each `first:last:size` (its first and last task
    index, and how many tasks it holds)."""
    return f"{PREFIX}batch:{batch_id}:chunks"


def submitter_key(batch_id: str) -> str:
    """A short-lived key naming the submitting process (`host:pid`), which keeps it alive (its lifetime is
    Settings.submitter_lease); gone before the batch is fully submitted means the input stopped coming."""
    return f"{PREFIX}batch:{batch_id}:submitter"


def write_probe_key(worker: str) -> str:
    """A key a worker writes to learn that Redis takes writes again after it ran out of memory."""
    return f"{PREFIX}probe:{worker}"


WRITE_PROBE_TTL = 10
"""Seconds a write probe key lives."""

SWEEPER_LEASE = PREFIX + "sweeper"
"""The name of the one worker of the fleet that looks for abandoned chunks now (expires unless renewed)."""

CONNECTION_FIELD = WORKER_FIELD_PREFIX + "conn"
"""Worker hash field: the client name its Redis connections carry (absent: they carry none)."""


def pulse_key(worker: str) -> str:
    """A key a worker running a chunk renews several times a second: gone means its pulse stopped."""
    return f"{PREFIX}pulse:{worker}"


def handback_key(entry: str) -> str:
    """A short claim on a started-registry entry (`job:execution`), so one process hands it back."""
    return f"{PREFIX}handback:{entry}"


def crash_key(job_id: str) -> str:
    """Hash of a chunk job's crash history: deaths, the task each death blames, the running marker of a
    chunk re-run after a crash (common.crash)."""
    return f"{PREFIX}crash:{job_id}"


def death_key(host: str, pid: int) -> str:
    """How a supervised worker process died ("signal 11", "exit code 3"), noted by its supervisor."""
    return f"{PREFIX}death:{host}:{pid}"


DEATH_NOTE_TTL = 3600
"""Seconds a death note lives: far longer than any recovery takes to read it."""


def events_key(minute: int) -> str:
    """Hash of event counts (common.events) during one minute since the epoch, field per kind."""
    return f"{PREFIX}events:{minute}"


EVENTS_TTL = 3660
"""Seconds an events bucket lives: the hour `dispatcher status` sums, and a minute."""


def chunk_job_id(batch_id: str, chunk: int) -> str:
    """The deterministic RQ job id of one chunk."""
    return f"{batch_id}-{chunk}"


def parse_chunk_job_id(job_id: str) -> tuple[str, int] | None:
    """Split a chunk job id into (batch id, chunk number); None if it is not one of ours."""
    batch_id, sep, chunk = job_id.rpartition("-")
    if not sep or not chunk.isdigit() or not BATCH_ID_PATTERN.match(batch_id):
        return None
    return batch_id, int(chunk)
