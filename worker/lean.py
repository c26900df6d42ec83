"""RQ's per-job worker bookkeeping in three round trips: same keys, same registries, same records.

RQ's SimpleWorker spends about 60 Redis commands, in some 25 round trips, and over a millisecond
of Python on each job besides the job itself. For a chunk of a thousand tasks that does not
matter; for chunk size 1 (one task, awaited at once) it is the latency. Here a job costs:

1. the dequeue (RQ's own BLMOVE into the intermediate list, or BLPOP for several queues);
2. one script that reads the job hash and writes everything RQ writes before a job runs: the
   execution record and index, the started-registry entry (what crash recovery re-queues from),
   the worker's state, current job and heartbeat, the job's started fields, out of the
   intermediate list; it also reads a flag the job function would otherwise fetch (a cancel mark);
3. one script that publishes the job's last results and writes RQ's success bookkeeping: worker
   counters, registry entry and execution gone, job hash deleted, worker idle.

Only success is fast. A job that fails, returns a Retry, keeps its result, repeats, or whose hash
is anything but plain goes through RQ's own methods (pipelined where RQ would send them one by
one), so failure handling, Retry and the records `rq info` and rq-dashboard read are RQ's.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import traceback
import uuid
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import redis
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution, ExecutionRegistry
from rq.job import JOB_ID_PATTERN, Job, JobStatus, Retry, _job_stack
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import as_text, now, str_to_date
from rq.worker import SimpleWorker, WorkerStatus

from common.durability import ReplicaWait
from worker.resilience import is_outage

if TYPE_CHECKING:
    from worker.publish import ResultWrite

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # the `fast` extra
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - depends on the install
    _pack = None

HEARTBEAT_MIN_INTERVAL = 1.0
"""Seconds within which a repeated idle-loop heartbeat is skipped (the worker key lives for 30 s or more)."""
SUSPENSION_CHECK_INTERVAL = 1.0
"""Seconds within which `rq suspend` is not checked again while jobs keep coming."""

# KEYS: job hash, intermediate list ('' if none), worker hash, started registry, execution hash,
#       executions index, probe hash ('' if none).
# ARGV: job id, queue name, execution id, start (epoch seconds), start (RQ's date format), worker name,
#       heartbeat ttl, registry score, executions score, probe field.
# The writes are those of RQ 2.12's prepare_execution + prepare_job_execution + Job.perform's PERSIST.
# A job whose hash is gone is dropped from the intermediate list (RQ's dequeue skips it); a job from
# another queue's registry (a planted hash) is returned untouched for RQ's own path.
_START = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then
    if KEYS[2] ~= '' then redis.call('LREM', KEYS[2], 1, ARGV[1]) end
    return false
end
local origin = false
for i = 1, #fields, 2 do
    if fields[i] == 'origin' then origin = fields[i + 1] break end
end
if origin ~= ARGV[2] then return {0, fields, 0} end
local ttl = tonumber(ARGV[7])
redis.call('HSET', KEYS[5], 'id', ARGV[3], 'created_at', ARGV[4], 'last_heartbeat', ARGV[4], 'worker_name', ARGV[6])
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('ZADD', KEYS[6], ARGV[9], ARGV[3])
redis.call('EXPIRE', KEYS[6], ttl + 60)
redis.call('ZADD', KEYS[4], ARGV[8], ARGV[1] .. ':' .. ARGV[3])
redis.call('HSET', KEYS[3], 'state', 'busy', 'current_job', ARGV[1], 'current_job_working_time', '0',
           'last_heartbeat', ARGV[5])
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('HSET', KEYS[1], 'last_heartbeat', ARGV[5], 'status', 'started', 'started_at', ARGV[5],
           'worker_name', ARGV[6])
if KEYS[2] ~= '' then redis.call('LREM', KEYS[2], 1, ARGV[1]) end
redis.call('PERSIST', KEYS[1])
local probe = 0
if KEYS[7] ~= '' then probe = redis.call('HEXISTS', KEYS[7], ARGV[10]) end
return {1, fields, probe}
"""

# KEYS: worker hash, started registry, execution hash, executions index, job hash, its dependents and
#       dependencies keys, then (when results come along) the result stream and each counter's hash.
# ARGV: registry member, working seconds, result ttl, number of stream field/value items, those items,
#       then per counter: field, amount, 1 if its hash expires with the stream.
# The bookkeeping is RQ 2.12's handle_job_success for a job kept 0 seconds with no dependents, plus
# SimpleWorker's return to idle; the results part is worker.publish.ResultWrite.apply.
_FINISH = """
local nfields = tonumber(ARGV[4])
if nfields > 0 then
    local entry = {}
    for i = 1, nfields do entry[i] = ARGV[4 + i] end
    redis.call('XADD', KEYS[8], '*', unpack(entry))
    redis.call('EXPIRE', KEYS[8], ARGV[3])
    local arg = 5 + nfields
    for k = 9, #KEYS do
        redis.call('HINCRBY', KEYS[k], ARGV[arg], ARGV[arg + 1])
        if ARGV[arg + 2] == '1' then redis.call('EXPIRE', KEYS[k], ARGV[3]) end
        arg = arg + 3
    end
end
redis.call('HINCRBY', KEYS[1], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'total_working_time', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HDEL', KEYS[1], 'current_job')
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'state', 'idle')
return 1
"""


class Link:
    """One connection of the worker's pool, kept for the per-job commands and used without
    redis-py's per-command machinery (pool checkout, retry wrapper, metrics): ~20 us of CPU per
    command instead of ~60. A connection error surfaces at once (after redis-py has dropped the
    socket), to RQ's reconnection loop or the worker's outage handling; the next call reconnects (on
    a Sentinel pool, to the master the sentinels name then: common.sentinel)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._connection: Any = None

    def call(self, *args: Any) -> Any:
        """Send one command and return its reply (an error reply raises, as in redis-py)."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self._client.connection_pool.get_connection()
        if _pack is None:
            connection.send_command(*args)
        else:  # redis-py's packer copies every argument through a generator first (~5 us a command)
            connection.send_packed_command([_pack(args)])
        return connection.read_response()

    def blpop(self, keys: list[str], timeout: int) -> Any:
        """BLPOP on this connection, for RQ's Queue.lpop (several queues): the pop and the start
        script then share one connection, so a connection that died with a Redis restart fails at
        the pop, before a job is taken, instead of at the start script, after it (losing the job)."""
        return self.call("BLPOP", *keys, timeout)

    def lpop(self, key: str) -> Any:
        """LPOP on this connection, for RQ's Queue.lpop without a timeout."""
        return self.call("LPOP", key)

    def script(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA a redis-py Script; EVAL once if the server does not have it (after a restart)."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.call("EVAL", script.script, len(keys), *keys, *args)

    def close(self) -> None:
        """Give the connection back to the pool."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._client.connection_pool.release(connection)


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
        """Job.perform without its PERSIST round trip when the worker already sent it."""
        if not self.started_by_worker:
            return super().perform()
        _job_stack.push(self)  # type: ignore[no-untyped-call]
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()  # type: ignore[no-untyped-call]
        return self._result

    def take_results(self, write: ResultWrite) -> None:
        """Keep the job's last results for the success script (see result_handover)."""
        self.handed_results = write


_PLAIN_FIELDS = frozenset(
    {
        b"data", b"status", b"origin", b"description", b"created_at", b"enqueued_at", b"started_at", b"ended_at",
        b"last_heartbeat", b"worker_name", b"timeout", b"result_ttl", b"failure_ttl", b"ttl", b"retries_left",
        b"retry_intervals", b"number_of_retries", b"group_id", b"success_callback_name", b"failure_callback_name",
        b"stopped_callback_name",
    }
)  # fmt: skip
"""Job hash fields the quick restore reads; a hash with any other field is restored by RQ's restore."""
_CALLBACK_FIELDS = (b"success_callback_name", b"failure_callback_name", b"stopped_callback_name")


class JobFactory:
    """Builds jobs of one class from job hashes, without Job.__init__ (which checks its serializer
    against a runtime Protocol, ~25 us) and, for the plain hashes our dispatcher writes, without
    Job.restore's strptime date parsing (~80 us). Anything unusual goes through the class's restore."""

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


class LeanBookkeeping(SimpleWorker):
    """Overrides of RQ 2.12 BaseWorker methods that cut each job to three round trips (see the module
    docstring). The quick path needs a heartbeat TTL known before the job is read: subclasses give it
    by overriding `_start_ttl`; without one every job takes RQ's (pipelined) path."""

    _last_beat: float = 0.0
    _last_suspension_check: float = 0.0
    _staged: Any = None
    _scripts: tuple[Any, Any] | None = None
    _link: Link | None = None
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
                intermediate = self._intermediate_key(queue.name)
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
        stamp = started.isoformat(timespec="microseconds")[:26] + "Z"  # RQ's utcformat, without strftime
        epoch = started.timestamp()
        probe = self._start_probe(job_id)
        probe_key, probe_field = probe or ("", "")
        keys = [Job.redis_job_namespace_prefix + job_id, intermediate, self.key, self._registry(queue).key,
                f"rq:execution:{job_id}:{execution_id}", ExecutionRegistry.key_template.format(job_id),
                probe_key]  # fmt: skip
        args = [job_id, queue.name, execution_id, repr(epoch), stamp, self.name, ttl,
                int(epoch) + ttl, int(epoch) + ttl + 60, probe_field]  # fmt: skip
        try:
            reply = self._hot_link().script(start, keys, args)
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
        self.current_job_working_time = 0
        self.last_heartbeat = started
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
            self._scripts = (self.connection.register_script(_START), self.connection.register_script(_FINISH))
        return self._scripts

    def _hot_link(self) -> Link:
        if self._link is None:
            self._link = Link(self.connection)
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
        """Replaces rq.executions.prepare_execution: nothing for a job the start script started;
        otherwise the same writes (execution record, started registry entry, state busy), staged on
        a transaction that prepare_job_execution sends, so both take one round trip instead of two."""
        if getattr(job, "started_by_worker", False) and self.execution is not None:
            return self.execution
        pipe = self.connection.pipeline()
        self.execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self._staged = pipe
        return self.execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Replaces BaseWorker.prepare_job_execution: nothing for a job the start script started;
        otherwise RQ's writes (current job, heartbeats, job started, out of the intermediate list) on
        the transaction prepare_execution staged, plus the PERSIST Job.perform would send on its own."""
        if getattr(job, "started_by_worker", False):
            return
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
        if isinstance(job, LeanJob):
            job.started_by_worker = True

    def perform_job(self, job: Job, queue: Queue) -> bool:
        """BaseWorker.perform_job for a job the start script started, minus its per-job logging and
        registry objects; every other outcome than success is handed to RQ's methods unchanged."""
        if not isinstance(job, LeanJob) or job.result_handover is None:
            return bool(super().perform_job(job, queue))
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
            if isinstance(return_value, Retry):
                self._flush_handed_results(job)
                assert self.execution is not None
                self.handle_job_retry(job=job, queue=queue, retry=return_value,
                                      started_job_registry=self._registry(queue), execution=self.execution)  # fmt: skip
                return True
            job._status = JobStatus.FINISHED
            job.execute_success_callback(self.death_penalty_class, return_value)
            self.handle_job_success(job=job, queue=queue, started_job_registry=self._registry(queue))
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
        exc_string = "".join(traceback.format_exception(*exc_info))
        self._flush_handed_results(job)
        job._status = JobStatus.FAILED
        self.handle_execution_ended(job, queue, job.failure_callback_timeout)
        try:
            job.execute_failure_callback(self.death_penalty_class, *exc_info)
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
        script instead of about twelve round trips, carrying the results the job handed over.

        RQ's version WATCHes the dependents key, enqueues dependents, then deletes the job through
        Job.delete, which reads its status three to five times and its executions one by one. Chunk
        jobs have no dependents (the dispatcher never enqueues with depends_on), no repeats, and
        exactly one live execution: ours. The writes are the same: worker counters, the started
        registry entry, the execution hash and index, the worker's current job, the job hash; and
        the worker's state goes back to idle in the same step.
        """
        execution = self.execution
        if job.get_result_ttl(self.default_result_ttl) != 0 or job.repeats_left is not None or execution is None:
            self._flush_handed_results(job)
            super().handle_job_success(job, queue, started_job_registry)
            return
        assert job.started_at is not None and job.ended_at is not None
        keys = [self.key, started_job_registry.key, execution.key, ExecutionRegistry.key_template.format(job.id),
                job.key, job.dependents_key, job.dependencies_key]  # fmt: skip
        args: list[Any] = [execution.composite_key, repr((job.ended_at - job.started_at).total_seconds())]
        write = getattr(job, "handed_results", None)
        if write is None:
            args += [0, 0]
        else:
            items = [item for pair in write.fields.items() for item in pair]
            args += [write.ttl, len(items), *items]
            keys.append(write.stream)
            for key, field, amount, expires in write.counters:
                keys.append(key)
                args += [field, amount, 1 if expires else 0]
        link = self._hot_link()
        link.script(self._lua()[1], keys, args)
        if self.replica_wait is not None:
            self.replica_wait.check(link.call(*self.replica_wait.command), f"job {job.id}: success and results")
        if write is not None:
            job.handed_results = None  # type: ignore[attr-defined]
        # Only now: RQ's warm shutdown interrupts a worker it believes idle at once.
        self._state = WorkerStatus.IDLE
        self.execution = None
