"""RQ's per-job worker bookkeeping with fewer round trips: same keys, same registries, pipelined.

RQ's SimpleWorker spends about 60 Redis commands, in some 25 round trips, on each job
besides the job itself. For a chunk of a thousand tasks that does not matter; for chunk size 1
(one task, awaited at once) those round trips are the latency. Each override below replaces one
RQ method and keeps what it leaves behind in Redis: the worker hash, its heartbeats and counters,
the started registry (crash recovery), the execution records and the job hash.
"""

from __future__ import annotations

import time
from typing import Any

from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus, _job_stack
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

HEARTBEAT_MIN_INTERVAL = 1.0
"""Seconds within which a repeated idle-loop heartbeat is skipped (the worker key lives for 30 s or more)."""
SUSPENSION_CHECK_INTERVAL = 1.0
"""Seconds within which `rq suspend` is not checked again while jobs keep coming."""


class LeanBookkeeping(SimpleWorker):
    """Overrides of RQ 2.12 BaseWorker methods that cut the round trips of each job (see module docstring)."""

    _last_beat: float = 0.0
    _last_suspension_check: float = 0.0
    _staged: Any = None

    def check_for_suspension(self, burst: bool) -> None:
        """Replaces BaseWorker.check_for_suspension: RQ asks Redis before every job; once a second is
        enough for `rq suspend` to take effect."""
        started = time.monotonic()
        if started - self._last_suspension_check < SUSPENSION_CHECK_INTERVAL:
            return
        super().check_for_suspension(burst)
        self._last_suspension_check = time.monotonic()

    def prepare_execution(self, job: Job) -> Execution:
        """Replaces rq.executions.prepare_execution: the same writes (execution record, started
        registry entry, state busy), staged on a transaction that prepare_job_execution sends, so
        both take one round trip instead of two."""
        pipe = self.connection.pipeline()
        self.execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self._staged = pipe
        return self.execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Replaces BaseWorker.prepare_job_execution: RQ's writes (current job, heartbeats, job
        started, out of the intermediate list) on the transaction prepare_execution staged, plus the
        PERSIST that Job.perform would otherwise send on its own."""
        pipe, self._staged = self._staged, None
        if pipe is None:
            pipe = self.connection.pipeline()
        with pipe:
            self.set_current_job_id(job.id, pipeline=pipe)
            self.set_current_job_working_time(0, pipeline=pipe)
            ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            if remove_from_intermediate_queue:
                pipe.lrem(self._intermediate_key(job.origin), 1, job.id)
            pipe.persist(job.key)
            pipe.execute()
        job.persisted_by_worker = True  # type: ignore[attr-defined]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """Replaces BaseWorker.heartbeat: HSET and EXPIRE in one round trip instead of two, and at most
        once a second when called on its own (RQ calls it three times around every dequeue)."""
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

    def _intermediate_key(self, origin: str) -> str:
        # Building a Queue per job only to name this key cost ~30 us (RQ resolves its serializer
        # through a runtime Protocol check each time).
        cache: dict[str, str] = self.__dict__.setdefault("_intermediate_keys", {})
        if origin not in cache:
            cache[origin] = Queue(origin, connection=self.connection).intermediate_queue_key
        return cache[origin]

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

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """Replaces BaseWorker.handle_job_success for jobs kept zero seconds (every chunk job): one
        MULTI/EXEC instead of about twelve round trips.

        RQ's version WATCHes the dependents key, enqueues dependents, then deletes the job through
        Job.delete, which reads its status three to five times and its executions one by one. Chunk
        jobs have no dependents (the dispatcher never enqueues with depends_on), no repeats, and
        exactly one live execution: ours. The writes are the same: worker counters, the started
        registry entry, the execution hash and index, the worker's current job, the job hash; and
        the worker's state goes back to idle in the same transaction.
        """
        execution = self.execution
        if job.get_result_ttl(self.default_result_ttl) != 0 or job.repeats_left is not None or execution is None:
            super().handle_job_success(job, queue, started_job_registry)
            return
        assert job.started_at is not None and job.ended_at is not None
        with self.connection.pipeline(transaction=True) as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            pipe.hincrbyfloat(self.key, "total_working_time", (job.ended_at - job.started_at).total_seconds())
            pipe.zrem(started_job_registry.key, execution.composite_key)
            pipe.delete(execution.key, ExecutionRegistry(job.id, self.connection).key)
            pipe.hdel(self.key, "current_job")
            pipe.delete(job.key, job.dependents_key, job.dependencies_key)
            pipe.hset(self.key, "state", WorkerStatus.IDLE)  # SimpleWorker.execute_job's next write
            pipe.execute()
        # Only now: RQ's warm shutdown interrupts a worker it believes idle at once.
        self._state = WorkerStatus.IDLE
        self.execution = None


class LeanPerform(Job):
    """Job.perform without its PERSIST round trip when the worker already sent it (see above)."""

    def perform(self) -> Any:
        """Replaces Job.perform: the same job stack and execution, minus the PERSIST that
        LeanBookkeeping.prepare_job_execution sent with the job's start transaction."""
        if not getattr(self, "persisted_by_worker", False):
            return super().perform()
        _job_stack.push(self)  # type: ignore[no-untyped-call]
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()  # type: ignore[no-untyped-call]
        return self._result
