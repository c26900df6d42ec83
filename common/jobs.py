"""The RQ job class both sides load jobs with: inert (no callbacks, no webhooks) and crash-proof."""

from __future__ import annotations

from typing import Any

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus


class InertJob(Job):
    """A Job that never imports callbacks or sends webhooks named in Redis, and survives a bad hash.

    RQ resolves callback names by importing any dotted path stored in the job hash, in whichever
    process loads the job (a worker, or a dispatcher cleaning a registry). Loading jobs through this
    class means a job planted in Redis can make neither side run code or send requests.
    """

    refusal: str | None = None

    def restore(self, raw_data: Any) -> None:
        """RQ's restore, but a malformed job hash marks the job refused instead of raising."""
        try:
            super().restore(raw_data)
        except NoSuchJobError:
            raise
        except Exception as exc:
            self.refusal = f"malformed job hash ({type(exc).__name__}: {exc}); refused, nothing was run"
            self._status = JobStatus.QUEUED
            if not isinstance(self.timeout, int):
                self.timeout = None

    def _deserialize_data(self) -> None:
        """RQ's data decoding, but undecodable data (a pickle under our JSON serializer, garbage)
        leaves an inert placeholder and marks the job refused, so logging and failure handling
        that read `func_name` or `args` never crash the process."""
        try:
            super()._deserialize_data()  # type: ignore[no-untyped-call]
        except Exception:
            self.refusal = (
                "job data is not JSON (a pickle or corrupt payload); refused, nothing was deserialized or run"
            )
            self._func_name, self._instance, self._args, self._kwargs = "<refused>", None, (), {}

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
