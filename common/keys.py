"""Every Redis key name, prefix and job id this system uses (RQ's own keys stay RQ's)."""

from __future__ import annotations

import re

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

RQ_WORKER_PREFIX = "rq:worker:"
"""RQ's key prefix of a worker's hash (RQ owns the hash; we only add `dw_` fields to it)."""

BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,64}$")
"""Batch ids: RQ job ids allow only [A-Za-z0-9_-], and '-' separates batch from chunk."""


def batch_key(batch_id: str) -> str:
    """Hash describing one batch: state, total, chunk count, created time, settings."""
    return f"{PREFIX}batch:{batch_id}"


def results_key(batch_id: str) -> str:
    """Stream of one batch's results, one entry per published group of task results."""
    return f"{PREFIX}batch:{batch_id}:results"


def chunks_key(batch_id: str) -> str:
    """List of the number of tasks in each chunk of a batch, in chunk order."""
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
