"""The fast path's job restore: a job built from its hash without Job.__init__ and Job.restore.

Replaces RQ's Job.fetch (Job.__init__ + Job.restore) for the plain hashes our dispatcher writes; any
hash with a field it does not know goes through the job class's own restore.
tests/integration/test_rq_differential.py proves the jobs equal to those RQ's restore builds.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone
from typing import Any

from rq.job import Job, JobStatus
from rq.utils import now, str_to_date

_PLAIN_FIELDS = frozenset(
    {
        b"data",
        b"status",
        b"origin",
        b"description",
        b"created_at",
        b"enqueued_at",
        b"started_at",
        b"ended_at",
        b"last_heartbeat",
        b"worker_name",
        b"timeout",
        b"result_ttl",
        b"failure_ttl",
        b"ttl",
        b"retries_left",
        b"retry_intervals",
        b"number_of_retries",
        b"group_id",
        b"success_callback_name",
        b"failure_callback_name",
        b"stopped_callback_name",
    }
)
"""Job hash fields the quick restore reads; a hash with any other field is restored by RQ's restore."""
_CALLBACK_FIELDS = (b"success_callback_name", b"failure_callback_name", b"stopped_callback_name")


class JobFactory:
    """Builds jobs of one class from job hashes, without Job.__init__ (which checks its serializer
    against a runtime Protocol, slowly) and, for the plain hashes our dispatcher writes, without
    Job.restore's strptime date parsing (slower still). Anything unusual goes through the class's
    restore. What each costs: docs/performance.md."""

    def __init__(self, job_class: type[Job], connection: Any, serializer: Any) -> None:
        self.job_class = job_class
        self.connection = connection
        self.serializer = serializer
        self._blank = vars(job_class("x", connection=connection, serializer=serializer))

    def new(self, job_id: str) -> Job:
        """A job with Job.__init__'s state and this id."""
        job: Job = self.job_class.__new__(self.job_class)
        state = vars(job)
        state.update(self._blank)
        state.update(_id=job_id, created_at=now(), webhooks=[], _dependency_ids=[], meta={})
        return job

    def restore(self, job_id: str, fields: dict[bytes, bytes]) -> Job:
        """The job `job_id` as its hash `fields` describe it (RQ's restore for anything unusual)."""
        job = self.new(job_id)
        if not _restore_plain(job, fields):
            job = self.new(job_id)
            job.restore(fields)
        return job


def _date(raw: bytes | None) -> datetime | None:
    if not raw:
        return None
    text = raw.decode()
    if len(text) == 27 and text[-1] == "Z":  # RQ's own format, microseconds and all
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    return str_to_date(text)


def _restore_plain(job: Job, fields: dict[bytes, bytes]) -> bool:
    """Job.restore for a hash of plain fields only; False (the job is then thrown away) when the
    hash holds anything RQ's restore would treat specially or cannot parse."""
    get = fields.get
    for name, value in fields.items():
        if name not in _PLAIN_FIELDS or (value and name in _CALLBACK_FIELDS):
            return False
    try:
        raw = fields[b"data"]
        if raw[:1] == b"[":  # JSON as our dispatcher writes it; never a zlib stream (RQ would keep it as is)
            data = raw
        else:
            try:
                data = zlib.decompress(raw)
            except zlib.error:  # stored uncompressed: RQ falls back the same way
                data = raw
        status = get(b"status")
        job._status = JobStatus(status.decode()) if status else JobStatus.CREATED
        job.created_at = _date(get(b"created_at")) or now()
        job.enqueued_at = _date(get(b"enqueued_at"))
        job.started_at = _date(get(b"started_at"))
        job.ended_at = _date(get(b"ended_at"))
        job.last_heartbeat = _date(get(b"last_heartbeat"))
        job.timeout = _int(get(b"timeout"))
        job.result_ttl = _int(get(b"result_ttl"))
        job.failure_ttl = _int(get(b"failure_ttl"))
        job.ttl = _int(get(b"ttl"))
        job.retries_left = _int(get(b"retries_left"))
        job.number_of_retries = _int(get(b"number_of_retries"))
        intervals = get(b"retry_intervals")
        if intervals:
            job.retry_intervals = json.loads(intervals)
        job.origin = _text(get(b"origin")) or ""
        job.worker_name = _text(get(b"worker_name"))
        job.description = _text(get(b"description"))
        job.group_id = _text(get(b"group_id"))
    except (KeyError, ValueError, TypeError):
        return False
    job.data = data
    return True


def _int(raw: bytes | None) -> int | None:
    return int(raw) if raw else None


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw else None
