"""The start of the worker's fast path (worker.lean): the dequeue and the start script.

Kept whole, though just over 250 lines: a hot path, clearer as one class of the RQ methods it overrides.

The idle loop is RQ's; the job is popped as RQ pops it, then read and started by one script
(worker.lean_scripts.START) instead of RQ's Job.fetch and two pipelines.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import datetime
from typing import Any

import redis
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import as_text, now
from rq.worker import SimpleWorker, WorkerStatus

from common import keys
from common.direct import DirectConnection
from common.rqcompat import RQ3
from worker.lean_job import LeanJob
from worker.lean_restore import JobFactory
from worker.lean_scripts import FINISH, START


class LeanStart(SimpleWorker):
    """Overrides of RQ's BaseWorker methods that dequeue and start a job in one round trip after the
    pop. It needs a heartbeat TTL known before the job is read: subclasses give it by overriding
    `_start_ttl`; without one every job takes RQ's own path."""

    _last_beat: float = 0.0
    """When the idle loop's heartbeat last went out (time.monotonic); 0 asks for one at once."""
    _scripts: tuple[Any, Any] | None = None
    _link: DirectConnection | None = None
    _factory: JobFactory | None = None

    def _start_ttl(self) -> int | None:
        """The heartbeat TTL of any job this worker starts, or None if it depends on the job."""
        return None

    def _start_probe(self, job_id: str) -> tuple[str, str] | None:
        """A (hash key, field) to read atomically with the job's start, for the job function."""
        return None

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """Replaces BaseWorker.dequeue_job_and_maintain_ttl: the same idle loop (heartbeats,
        maintenance, idle limit, reconnection back-off), but the job is taken and started by
        `_dequeue` in one round trip after the pop instead of RQ's fetch plus two pipelines."""
        if self._start_ttl() is None or not issubclass(self.job_class, LeanJob):
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

        result = None
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + ",".join(self.queue_names()))  # type: ignore[no-untyped-call]
        connection_wait_time = 1.0
        idle_since = now()
        idle_time_left = max_idle_time
        while True:
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()  # type: ignore[no-untyped-call]
                if timeout is not None and idle_time_left is not None:
                    timeout = min(timeout, idle_time_left)
                result = self._dequeue(timeout)
                if result is not None:
                    job, queue = result
                    self.reorder_queues(reference_queue=queue)
                    job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
                    if self.log.isEnabledFor(logging.INFO):
                        self.log.info("Worker %s: %s: %s", self.name, queue.name, job.id)
                break
            except DequeueTimeout:
                if max_idle_time is not None:
                    idle_for = (now() - idle_since).total_seconds()
                    idle_time_left = math.ceil(max_idle_time - idle_for)
                    if idle_time_left <= 0:
                        break
            except redis.exceptions.ConnectionError as conn_err:
                self.log.error(
                    "Worker %s: could not connect to Redis instance: %s retrying in %d seconds...",
                    self.name,
                    conn_err,
                    connection_wait_time,
                )
                time.sleep(connection_wait_time)
                connection_wait_time = min(
                    connection_wait_time * self.exponential_backoff_factor, self.max_connection_wait_time
                )
        if result is None:  # else the start script wrote what this heartbeat would (so does RQ's prepare)
            self.heartbeat()
        return result

    def _dequeue(self, timeout: int | None) -> tuple[Job, Queue] | None:
        """RQ's Queue.dequeue_any (BLMOVE for one queue on Redis >= 6.2, else BLPOP), then the start
        script instead of Job.fetch."""
        while True:
            queues = self._ordered_queues
            intermediate = ""
            if len(queues) == 1 and self.get_redis_server_version() >= (6, 2, 0):  # type: ignore[no-untyped-call]
                queue = queues[0]
                intermediate = keys.rq_intermediate_key(queue.name)
                link = self._hot_link()
                if timeout is None:
                    raw_id = link.call("LMOVE", queue.key, intermediate, "LEFT", "RIGHT")
                    if raw_id is None:
                        return None
                else:
                    raw_id = link.call("BLMOVE", queue.key, intermediate, "LEFT", "RIGHT", timeout)
                    if raw_id is None:
                        raise DequeueTimeout(timeout, queue.key)
            else:
                queue_keys = [q.key for q in queues]
                popped = self.queue_class.lpop(queue_keys, timeout, connection=self._hot_link())  # type: ignore[arg-type]
                if popped is None:
                    return None
                queue_key, raw_id = as_text(popped[0]), popped[1]
                queue = next(q for q in queues if q.key == queue_key)
            job = self._start(as_text(raw_id), queue, intermediate)
            if job is not None:
                return job, queue

    def _current_execution(self) -> Execution | None:
        """The execution this worker runs (RQ 3's `execution` property reads Redis when there is none)."""
        worker: Any = self  # RQ 3's attributes are unknown to RQ 2's types
        execution: Execution | None = next(iter(worker.executions.values()), None) if RQ3 else worker.execution
        return execution

    def _start(self, job_id: str, queue: Queue, intermediate: str) -> Job | None:
        """Read and start the dequeued job in one round trip; None if its hash is gone."""
        ttl = self._start_ttl()
        if ttl is None or not JOB_ID_PATTERN.fullmatch(job_id):  # RQ's fetch raises on a bad id, as before
            try:
                return self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
            except NoSuchJobError:
                return None
        start = self._lua()[0]
        factory = self._job_factory()
        # From here a stop signal only asks the worker to stop after this job, as once RQ marks it busy.
        self._state = WorkerStatus.BUSY
        execution_id = uuid.uuid4().hex
        started = now()
        stamp = rq_date(started)
        epoch = started.timestamp()
        probe = self._start_probe(job_id)
        probe_key, probe_field = probe or ("", "")
        script_keys = [
            keys.rq_job_key(job_id),
            intermediate,
            self.key,
            self._registry(queue).key,
            keys.rq_execution_key(job_id, execution_id),
            keys.rq_executions_key(job_id),
            probe_key,
            keys.rq_worker_executions_key(self.name) or "",
        ]
        args = [
            job_id,
            queue.name,
            execution_id,
            repr(epoch),
            stamp,
            self.name,
            ttl,
            int(epoch) + ttl,
            int(epoch) + ttl + 60,
            probe_field,
        ]
        try:
            reply = self._hot_link().script(start, script_keys, args)
        except BaseException:  # e.g. Redis gone: back in the idle loop, a stop signal must stop the worker at once
            self._state = WorkerStatus.IDLE
            raise
        if not reply:
            self._state = WorkerStatus.IDLE
            return None
        flat = reply[1]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        job = factory.restore(job_id, fields)
        if not reply[0]:  # not ours to start here: RQ's path, from prepare_execution on
            self._state = WorkerStatus.IDLE
            return job
        execution = Execution(execution_id, job_id, self.connection, worker_name=self.name)
        execution.created_at = execution.last_heartbeat = started
        self.execution = execution
        if not RQ3:
            self.current_job_working_time = 0
        self.last_heartbeat = started
        self._last_beat = 0.0  # the worker record now expires with the job's heartbeat TTL: renew it next
        job.worker_name = self.name
        job.last_heartbeat = job.started_at = started
        job._status = JobStatus.STARTED
        if isinstance(job, LeanJob):
            job.started_by_worker = True
            if probe is not None:
                job.start_probes = {probe: bool(reply[2])}
            if job.get_result_ttl(self.default_result_ttl) == 0 and job.repeats_left is None:
                job.result_handover = job.hand_over
        return job

    def _lua(self) -> tuple[Any, Any]:
        if self._scripts is None:
            self._scripts = (self.connection.register_script(START), self.connection.register_script(FINISH))
        return self._scripts

    def _hot_link(self) -> DirectConnection:
        if self._link is None:
            self._link = DirectConnection(self.connection)
        return self._link

    def teardown(self) -> None:
        """RQ's teardown, and the per-job connection back to its pool."""
        if self._link is not None:
            self._link.close()
        super().teardown()  # type: ignore[no-untyped-call]

    def _registry(self, queue: Queue) -> StartedJobRegistry:
        # Queue.started_job_registry builds a new registry (and checks its serializer) on each access.
        cache: dict[str, StartedJobRegistry] = self.__dict__.setdefault("_registries", {})
        registry = cache.get(queue.name)
        if registry is None or registry.connection is not queue.connection:
            registry = cache[queue.name] = queue.started_job_registry
        return registry

    def _job_factory(self) -> JobFactory:
        if self._factory is None:
            self._factory = JobFactory(self.job_class, self.connection, self.serializer)
        return self._factory

    def prepare_execution(self, job: Job) -> Execution:
        """Replaces rq.executions.prepare_execution: nothing for a job the start script started (RQ's
        own for any other)."""
        execution = self._current_execution()
        if getattr(job, "started_by_worker", False) and execution is not None:
            return execution
        created: Execution = super().prepare_execution(job)
        return created

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Replaces BaseWorker.prepare_job_execution: nothing for a job the start script started (RQ's
        own for any other)."""
        if getattr(job, "started_by_worker", False):
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)


def rq_date(moment: datetime) -> str:
    """rq.utils.utcformat's text of a UTC time, without strftime (the start and success scripts write it)."""
    return moment.isoformat(timespec="microseconds")[:26] + "Z"
