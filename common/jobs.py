"""The RQ job class both sides load jobs with: inert (no callbacks, no webhooks) and crash-proof."""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq.defaults import UNSERIALIZABLE_RETURN_VALUE_PAYLOAD
from rq.exceptions import AbandonedJobError, NoSuchJobError, StopRequested
from rq.job import Job
from rq.utils import decode_redis_hash

from common.crash import CRASHED_META, note_abandoned

log = logging.getLogger(__name__)

CRASH_RECORD_TTL = 86_400
"""Seconds a crash record lives when the job carries no TTL of its own (ours always do)."""

REFUSED_FUNCTION = "<refused>"
"""The function name a job gets when its data could not be read; no such function exists."""


class InertJob(Job):
    """A Job that never imports callbacks or sends webhooks named in Redis, and survives a bad hash.

    RQ resolves callback names by importing any dotted path stored in the job hash, in whichever
    process loads the job (a worker, or a dispatcher cleaning a registry). Loading jobs through this
    class means a job planted in Redis can make neither side run code or send requests. A hash that
    RQ cannot parse (a bad status, a non-numeric timeout, no data, data that is not JSON) is loaded
    with its unreadable fields left out and `refusal` set, so that RQ's ordinary failure path can
    record it instead of the worker crashing on it.
    """

    refusal: str | None = None

    def restore(self, raw_data: Any) -> None:
        """RQ's restore, but a malformed job hash marks the job refused instead of raising."""
        fields: dict[str, Any] = decode_redis_hash(raw_data)
        if not fields:
            raise NoSuchJobError(f"no job hash for {self.id}")
        try:
            super().restore(fields)
        except StopRequested:  # a shutdown signal that arrived while the job loaded, not a bad hash
            raise
        except Exception as exc:
            self.refusal = f"malformed job hash ({type(exc).__name__}: {exc}); refused, nothing was run"
            super().restore(self._readable_fields(fields))
        if isinstance(self.meta, dict) and "unserialized" in self.meta:
            self.meta = {}
            self.refusal = self.refusal or "job meta is not JSON (a pickle?); refused, nothing was unpickled or run"
        hooks = [n for n in ("success", "failure", "stopped") if getattr(self, f"_{n}_callback_name", None)]
        if hooks or getattr(self, "webhooks", None):
            self.refusal = self.refusal or (
                f"job names {'/'.join(hooks) or 'webhook'} callbacks, which we never set; refused, nothing was run"
            )
        if self._result is UNSERIALIZABLE_RETURN_VALUE_PAYLOAD:
            self._result = None
            self.refusal = self.refusal or "job result is not JSON (a pickle?); refused, nothing was unpickled or run"

    def _readable_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields RQ can parse, found by restoring them one by one into a throwaway job."""
        readable: dict[str, Any] = {"data": fields.get("data", b"")}
        for name, value in fields.items():
            if name == "data":
                continue
            candidate = {**readable, name: value}
            probe = Job(self.id, connection=self.connection, serializer=self.serializer)
            try:
                Job.restore(probe, candidate)
            except StopRequested:
                raise
            except Exception:
                continue
            readable = candidate
        return readable

    def _deserialize_data(self) -> None:
        """RQ's, but data that is not our JSON `[func, instance, args, kwargs]` refuses the job."""
        try:
            func_name, instance, args, kwargs = self.serializer.loads(self.data)
            if not isinstance(func_name, str) or not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
                raise TypeError("not [function name, instance, args, kwargs]")
        except StopRequested:
            raise
        except Exception:
            self.refusal = self.refusal or (
                "job data is not JSON (a pickle or corrupt payload); refused, nothing was deserialized or run"
            )
            func_name, instance, args, kwargs = REFUSED_FUNCTION, None, [], {}
        self._func_name, self._instance, self._args, self._kwargs = func_name, instance, args, kwargs

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        """Never: a job read from Redis must not make us send requests anywhere."""


def note_abandonment(job: Job, *exc_info: Any) -> None:
    """An exception handler for RQ's started-registry cleanup (pass it in `exception_handlers`), which
    calls it for each abandoned job just before it re-queues the job (or fails it once its retries are
    used up), on RQ 2 and RQ 3 alike: record the death that abandoned it (common.crash), mark the
    job's next run careful, and give back the retry when the death blamed a task. Any other
    exception is not ours to note; returns None, so the handlers after it run too."""
    if not exc_info or not (isinstance(exc_info[0], type) and issubclass(exc_info[0], AbandonedJobError)):
        return
    try:
        progress = note_abandoned(job.connection, job.id, job.ttl or job.failure_ttl or CRASH_RECORD_TTL)
    except redis.RedisError:
        raise
    except Exception:  # a damaged record must not stop the recovery: the chunk re-runs as before
        log.exception("job %s: could not record the death that abandoned it", job.id)
        progress = False
    if not isinstance(job.meta, dict):
        job.meta = {}
    job.meta[CRASHED_META] = True
    if progress:
        job.retries_left = (job.retries_left or 0) + 1


ABANDONMENT_HANDLERS: list[Any] = [note_abandonment]
"""What every started-registry cleanup of ours passes as `exception_handlers`."""
