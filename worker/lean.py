"""The worker's fast path: RQ's per-job bookkeeping in three round trips, same keys, same records.

RQ's SimpleWorker spends dozens of Redis commands, in many round trips, and much Python on each
job besides the job itself. For a chunk of a thousand tasks that does not matter; for chunk size 1
(one task, awaited at once) it is the latency (the counts: docs/performance.md). Here a job costs:

1. the dequeue (RQ's own BLMOVE into the intermediate list, or BLPOP for several queues);
2. the start script (worker.lean_scripts.START), which reads the job hash and writes everything RQ
   writes before a job runs; it also reads a flag the job function would otherwise fetch (a cancel mark);
3. the finish script (worker.lean_scripts.FINISH), which publishes the job's last results and writes
   RQ's success bookkeeping and the worker's return to idle.

Only success is fast. A job that fails, returns a Retry, keeps its result, repeats, or whose hash is
anything but plain goes through RQ's own methods, so failure handling, Retry and the records `rq info`
and rq-dashboard read are RQ's. The fast path runs only on the RQ series the differential test covers
(common.rqcompat); elsewhere the worker class without it is used (worker.runner).

The start (dequeue and start script) is worker.lean_start's; the job class worker.lean_job's.
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

import redis
from rq.executions import Execution
from rq.job import Job, JobStatus, Retry
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import now
from rq.worker import WorkerStatus

from common import keys
from common.durability import ReplicaWait
from common.rqcompat import RQ3
from worker.lean_job import LeanJob
from worker.lean_start import LeanStart, rq_date
from worker.resilience import is_outage

if RQ3:  # RQ 3 runs callbacks through functions of rq.callbacks; RQ 2 through Job methods
    from rq.callbacks import execute_success_callback

SUSPENSION_CHECK_INTERVAL = 1.0
"""Seconds within which `rq suspend` is not checked again while jobs keep coming."""
HEARTBEAT_MIN_INTERVAL = 1.0
"""Seconds within which a repeated idle-loop heartbeat is skipped, unless a job start shortened the
worker record's expiry since the last one (the record lives for RQ's worker TTL, 30 s or more)."""


class LeanBookkeeping(LeanStart):
    """Overrides of RQ's BaseWorker methods that cut each job to three round trips (see the module
    docstring): the start is LeanStart's, the job and its success script are here."""

    _last_suspension_check: float = 0.0
    replica_wait: ReplicaWait | None = None
    """The durable option: each success script (with the chunk's last results) is followed by a WAIT."""

    def check_for_suspension(self, burst: bool) -> None:
        """Replaces BaseWorker.check_for_suspension: RQ asks Redis before every job; once a second is
        enough for `rq suspend` to take effect."""
        started = time.monotonic()
        if started - self._last_suspension_check < SUSPENSION_CHECK_INTERVAL:
            return
        super().check_for_suspension(burst)
        self._last_suspension_check = time.monotonic()

    def perform_job(self, job: Job, queue: Queue, *execution: Any) -> bool:
        """Replaces BaseWorker.perform_job for a job the start script started, minus its per-job
        logging and registry objects; every other outcome than success is handed to RQ's methods
        unchanged (RQ 3 passes the execution; RQ 2 keeps it on the worker)."""
        if not isinstance(job, LeanJob) or job.result_handover is None:
            return bool(super().perform_job(job, queue, *execution))
        try:
            return self._perform_started_job(job, queue)
        finally:
            job.result_handover = None  # a bound method of the job: without this each job is a cycle for the GC

    def _perform_started_job(self, job: LeanJob, queue: Queue) -> bool:
        try:
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            with self.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                return_value = job.perform()
            self.handle_execution_ended(job, queue, job.success_callback_timeout)
            job._result = return_value
            execution = self._current_execution()
            if isinstance(return_value, Retry):
                self._publish_handed_over(job)
                assert execution is not None
                self.handle_job_retry(
                    job=job,
                    queue=queue,
                    retry=return_value,
                    started_job_registry=self._registry(queue),
                    execution=execution,
                )
                return True
            job._status = JobStatus.FINISHED
            if RQ3:
                execute_success_callback(job, self.death_penalty_class, return_value)
            else:
                rq2_job: Any = job
                rq2_job.execute_success_callback(self.death_penalty_class, return_value)
            self.handle_job_success(job, queue, self._registry(queue), execution)
            job.send_webhooks(JobStatus.FINISHED)
        except:  # noqa: E722 - RQ's own catch-all: every failure of the job is recorded, then the loop goes on
            self._fail_as_rq_does(job, queue)
            return False
        return True

    def _fail_as_rq_does(self, job: Job, queue: Queue) -> None:
        """BaseWorker.perform_job's failure branch, verbatim in effect (called in its `except`)."""
        exc_info = sys.exc_info()
        if exc_info[1] is not None and is_outage(exc_info[1]):
            raise exc_info[1]  # not the job's failure: the worker's outage handling leaves the chunk started
        self._publish_handed_over(job)
        if RQ3:
            worker: Any = self  # RQ 3's method, unknown to RQ 2's types
            worker._finalize_failure(job, queue, self._current_execution(), exc_info)
            return
        exc_string = "".join(traceback.format_exception(*exc_info))
        job._status = JobStatus.FAILED
        self.handle_execution_ended(job, queue, job.failure_callback_timeout)
        try:
            rq2_job: Any = job
            rq2_job.execute_failure_callback(self.death_penalty_class, *exc_info)
        except:  # noqa: E722 - as RQ: a failing failure callback replaces the traceback
            exc_info = sys.exc_info()
            exc_string = "".join(traceback.format_exception(*exc_info))
        self.handle_exception(job, *exc_info)
        self.handle_job_failure(job=job, exc_string=exc_string, queue=queue, started_job_registry=self._registry(queue))

    def _publish_handed_over(self, job: Job) -> None:
        """Results handed over for a success that is not coming are published on their own."""
        write = getattr(job, "handed_over", None)
        if write is None:
            return
        job.handed_over = None  # type: ignore[attr-defined]
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                write.apply(pipe)
                if self.replica_wait is not None:
                    pipe.execute_command(*self.replica_wait.command)  # type: ignore[no-untyped-call]
                replies = pipe.execute()
            if self.replica_wait is not None:
                self.replica_wait.check(replies[-1], f"job {job.id}: results")
        except redis.RedisError as exc:
            if is_outage(exc):  # unreachable or out of memory: the chunk stays started and is recovered
                raise
            self.log.warning("Worker %s: results of job %s not published: %s", self.name, job.id, exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """Replaces BaseWorker.heartbeat: its commands in one round trip instead of several, and at most
        once a second when called on its own (RQ calls it three times around every dequeue), unless a
        job's start shortened the worker record's expiry since (see HEARTBEAT_MIN_INTERVAL)."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
            return
        started = time.monotonic()
        if timeout is None and started - self._last_beat < HEARTBEAT_MIN_INTERVAL:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.execute()
        self._last_beat = started

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """Replaces BaseWorker.set_state: skips the write when the state is already `state` (RQ sets
        IDLE twice between jobs); only this worker writes its state field."""
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline=pipeline)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """Replaces BaseWorker.handle_execution_ended: the job heartbeat it sends only protects the
        job while callbacks run; chunk jobs have none, and on success the job hash is deleted next.
        A failed job keeps RQ's behaviour."""
        if job.get_status(refresh=False) == JobStatus.FAILED:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution | None = None
    ) -> None:
        """Replaces BaseWorker.handle_job_success for jobs kept zero seconds (every chunk job): one
        script instead of about twelve round trips, carrying the results the job handed over.

        RQ's version WATCHes the dependents key, enqueues dependents, then deletes the job through
        Job.delete, which reads its status three to five times and its executions one by one. Chunk
        jobs have no dependents (the dispatcher never enqueues with depends_on), no repeats, and
        exactly one live execution: ours. The writes are the same: worker counters, the started
        registry entry, the execution hash and index, the worker's current job, the job hash; and
        the worker's state goes back to idle in the same step (SimpleWorker.execute_job's set_state).
        """
        if execution is None:
            execution = self._current_execution()
        if job.get_result_ttl(self.default_result_ttl) != 0 or job.repeats_left is not None or execution is None:
            self._publish_handed_over(job)
            rq3_execution: list[Any] = [execution] if RQ3 else []
            super().handle_job_success(job, queue, started_job_registry, *rq3_execution)
            return
        assert job.started_at is not None and job.ended_at is not None
        script_keys = [
            self.key,
            started_job_registry.key,
            execution.key,
            keys.rq_executions_key(job.id),
            job.key,
            job.dependents_key,
            job.dependencies_key,
            keys.rq_worker_executions_key(self.name) or "",
            keys.rq_results_key(job.id) if RQ3 else "",
        ]
        beat = now()
        args: list[Any] = [execution.composite_key, repr((job.ended_at - job.started_at).total_seconds())]
        write = getattr(job, "handed_over", None)
        if write is None:
            args += [0, self.worker_ttl + 60, rq_date(beat), 0]
        else:
            items = [item for pair in write.fields.items() for item in pair]
            args += [write.ttl, self.worker_ttl + 60, rq_date(beat), len(items), *items]
            script_keys.append(write.stream)
            for key, field, amount, expires in write.counters:
                script_keys.append(key)
                args += [field, amount, 1 if expires else 0]
        link = self._hot_link()
        link.script(self._lua()[1], script_keys, args)
        if self.replica_wait is not None:
            self.replica_wait.check(link.call(*self.replica_wait.command), f"job {job.id}: success and results")
        if write is not None:
            job.handed_over = None  # type: ignore[attr-defined]
        # Only now: RQ's warm shutdown interrupts a worker it believes idle at once.
        self._state = WorkerStatus.IDLE
        self.execution = None
        self.last_heartbeat = beat
        self._last_beat = time.monotonic()
