"""The worker's fast path: RQ's per-job bookkeeping in three round trips, same keys, same records.

RQ's SimpleWorker spends about 60 Redis commands, in some 25 round trips, and over a millisecond of
Python on each job besides the job itself. For a chunk of a thousand tasks that does not matter; for
chunk size 1 (one task, awaited at once) it is the latency. Here a job costs:

1. the dequeue (RQ's own BLMOVE into the intermediate list, or BLPOP for several queues);
2. the start script (worker.lean_scripts.START), which reads the job hash and writes everything RQ
   writes before a job runs; it also reads a flag the job function would otherwise fetch (a cancel mark);
3. the finish script (worker.lean_scripts.FINISH), which publishes the job's last results and writes
   RQ's success bookkeeping and the worker's return to idle.

Only success is fast. A job that fails, returns a Retry, keeps its result, repeats, or whose hash is
anything but plain goes through RQ's own methods, so failure handling, Retry and the records `rq info`
and rq-dashboard read are RQ's. The fast path runs only on the RQ series the differential test covers
(common.rqcompat); elsewhere the worker class without it is used (worker.runner).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
import rq.job
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.job import JOB_ID_PATTERN, Job, JobStatus, Retry
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now
from rq.worker import SimpleWorker, WorkerStatus

from common import keys
from common.direct import DirectConnection
from common.durability import ReplicaWait
from common.rqcompat import RQ3
from worker.lean_restore import JobFactory
from worker.lean_scripts import FINISH, START
from worker.resilience import is_outage

if TYPE_CHECKING:
    from worker.publish import ResultWrite

if RQ3:  # RQ 3 runs callbacks through functions of rq.callbacks; RQ 2 through Job methods
    from rq.callbacks import execute_success_callback
else:
    _job_stack: Any = getattr(rq.job, "_job_stack", None)

SUSPENSION_CHECK_INTERVAL = 1.0
"""Seconds within which `rq suspend` is not checked again while jobs keep coming."""
HEARTBEAT_MIN_INTERVAL = 1.0
"""Seconds within which a repeated idle-loop heartbeat is skipped, unless a job start shortened the
worker record's expiry since the last one (the record lives for RQ's worker TTL, 30 s or more)."""


class LeanJob(Job):
    """An RQ Job that a LeanBookkeeping worker can start and finish with its scripts.

    `result_handover` is set while the worker will write the job's success with one script: the
    job function may then hand its last results over (worker.publish.ResultPublisher.finish).
    """

    started_by_worker = False
    """True when the worker's start script already wrote the start bookkeeping (and the PERSIST)."""
    result_handover: Callable[[ResultWrite], None] | None = None
    start_probes: dict[tuple[str, str], bool] | None = None
    """Flags read atomically with the start: (hash key, field) -> present."""
    handed_results: ResultWrite | None = None

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

    def take_results(self, write: ResultWrite) -> None:
        """Keep the job's last results for the success script (see result_handover)."""
        self.handed_results = write


class LeanBookkeeping(SimpleWorker):
    """Overrides of RQ's BaseWorker methods that cut each job to three round trips (see the module
    docstring). The quick path needs a heartbeat TTL known before the job is read: subclasses give it
    by overriding `_start_ttl`; without one every job takes RQ's own path."""

    _last_beat: float = 0.0
    _last_suspension_check: float = 0.0
    _scripts: tuple[Any, Any] | None = None
    _link: DirectConnection | None = None
    _factory: JobFactory | None = None
    replica_wait: ReplicaWait | None = None
    """The durable option: each success script (with the chunk's last results) is followed by a WAIT."""

    def _start_ttl(self) -> int | None:
        """The heartbeat TTL of any job this worker starts, or None if it depends on the job."""
        return None

    def _start_probe(self, job_id: str) -> tuple[str, str] | None:
        """A (hash key, field) to read atomically with the job's start, for the job function."""
        return None

    def check_for_suspension(self, burst: bool) -> None:
        """Replaces BaseWorker.check_for_suspension: RQ asks Redis before every job; once a second is
        enough for `rq suspend` to take effect."""
        started = time.monotonic()
        if started - self._last_suspension_check < SUSPENSION_CHECK_INTERVAL:
            return
        super().check_for_suspension(burst)
        self._last_suspension_check = time.monotonic()

    # -- the quick path: dequeue, start script, job, finish script ---------------------------------

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
                    self.name, conn_err, connection_wait_time,
                )  # fmt: skip
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
        stamp = _rq_date(started)
        epoch = started.timestamp()
        probe = self._start_probe(job_id)
        probe_key, probe_field = probe or ("", "")
        script_keys = [
            keys.rq_job_key(job_id), intermediate, self.key, self._registry(queue).key,
            keys.rq_execution_key(job_id, execution_id), keys.rq_executions_key(job_id), probe_key,
            keys.rq_worker_executions_key(self.name) or "",
        ]  # fmt: skip
        args = [job_id, queue.name, execution_id, repr(epoch), stamp, self.name, ttl,
                int(epoch) + ttl, int(epoch) + ttl + 60, probe_field]  # fmt: skip
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
                job.result_handover = job.take_results
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
                self._flush_handed_results(job)
                assert execution is not None
                self.handle_job_retry(job=job, queue=queue, retry=return_value,
                                      started_job_registry=self._registry(queue), execution=execution)  # fmt: skip
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
        self._flush_handed_results(job)
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
        self.handle_job_failure(job=job, exc_string=exc_string, queue=queue,
                                started_job_registry=self._registry(queue))  # fmt: skip

    def _flush_handed_results(self, job: Job) -> None:
        """Results handed over for a success that is not coming are published on their own."""
        write = getattr(job, "handed_results", None)
        if write is None:
            return
        job.handed_results = None  # type: ignore[attr-defined]
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
            self._flush_handed_results(job)
            rq3_execution: list[Any] = [execution] if RQ3 else []
            super().handle_job_success(job, queue, started_job_registry, *rq3_execution)
            return
        assert job.started_at is not None and job.ended_at is not None
        script_keys = [
            self.key, started_job_registry.key, execution.key, keys.rq_executions_key(job.id),
            job.key, job.dependents_key, job.dependencies_key,
            keys.rq_worker_executions_key(self.name) or "", keys.rq_results_key(job.id) if RQ3 else "",
        ]  # fmt: skip
        beat = now()
        args: list[Any] = [execution.composite_key, repr((job.ended_at - job.started_at).total_seconds())]
        write = getattr(job, "handed_results", None)
        if write is None:
            args += [0, self.worker_ttl + 60, _rq_date(beat), 0]
        else:
            items = [item for pair in write.fields.items() for item in pair]
            args += [write.ttl, self.worker_ttl + 60, _rq_date(beat), len(items), *items]
            script_keys.append(write.stream)
            for key, field, amount, expires in write.counters:
                script_keys.append(key)
                args += [field, amount, 1 if expires else 0]
        link = self._hot_link()
        link.script(self._lua()[1], script_keys, args)
        if self.replica_wait is not None:
            self.replica_wait.check(link.call(*self.replica_wait.command), f"job {job.id}: success and results")
        if write is not None:
            job.handed_results = None  # type: ignore[attr-defined]
        # Only now: RQ's warm shutdown interrupts a worker it believes idle at once.
        self._state = WorkerStatus.IDLE
        self.execution = None
        self.last_heartbeat = beat
        self._last_beat = time.monotonic()


def _rq_date(moment: datetime) -> str:
    """rq.utils.utcformat's text of a UTC time, without strftime."""
    return moment.isoformat(timespec="microseconds")[:26] + "Z"
