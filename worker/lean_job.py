"""The job class of the fast path: an RQ Job that LeanBookkeeping starts and finishes with its scripts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rq.job
from rq.job import Job

from common.rqcompat import RQ3

if TYPE_CHECKING:
    from worker.publish import ResultWrite

_job_stack: Any = None if RQ3 else getattr(rq.job, "_job_stack", None)


class LeanJob(Job):
    """An RQ Job that a LeanBookkeeping worker can start and finish with its scripts.

    The result handover: while the worker will write the job's success with one script, it offers
    `result_handover` (the job's `hand_over`); the job function's publisher then hands its last
    results over (worker.publish.ResultPublisher.finish) instead of writing them, and the success
    script writes what was `handed_over`.
    """

    started_by_worker = False
    """True when the worker's start script already wrote the start bookkeeping (and the PERSIST)."""
    result_handover: Callable[[ResultWrite], None] | None = None
    """The handover the worker offers for this job (its `hand_over`), None when it offers none."""
    handed_over: ResultWrite | None = None
    """The last results handed over, until the success script (or a failure) writes them."""
    start_probes: dict[tuple[str, str], bool] | None = None
    """Flags read atomically with the start: (hash key, field) -> present."""

    def perform(self) -> Any:
        """Replaces Job.perform on RQ 2 for a started job: without its PERSIST round trip, which the
        start script sent (RQ 3's Job.perform sends none)."""
        if RQ3 or not self.started_by_worker:
            return super().perform()
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result

    def hand_over(self, write: ResultWrite) -> None:
        """Keep the job's last results for the success script (see the class docstring)."""
        self.handed_over = write
