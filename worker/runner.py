"""The RQ worker that runs chunks: RQ's SimpleWorker, configured for safety and fast recovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import clean_registries
from rq.timeouts import BaseDeathPenalty
from rq.utils import now as rq_now
from rq.worker_registration import clean_worker_registry

from common import keys
from common.durability import ReplicaWait
from common.jobdata import ChunkJobSerializer
from common.jobs import ABANDONMENT_HANDLERS
from common.routing import served_queues
from common.rqcompat import RQ3, fast_path_refusal
from worker.cancel import cancel_probe
from worker.job import SafeJob
from worker.lean import LeanBookkeeping
from worker.liveness import LivenessBeat, TickReply, dead_namesake
from worker.resilience import ResilientLoop, outage_exits, stop_pubsub_thread
from worker.runtime import Runtime
from worker.stopreason import StopReason
from worker.sweeper import LEASE_TTL, PULSE_INTERVAL, PULSE_TTL, SWEEP_INTERVAL, Sweeper, client_name

log = logging.getLogger("worker")

IDLE_BEATS_PER_TTL = 2
"""An idle worker renews its registration this many times per heartbeat TTL (a busy one every
heartbeat interval): it holds no chunk, so only its registration depends on it."""
ALERT_WORKERS_PER_INTERVAL = 4
"""While chunks are started, idle workers that do not sweep try for the sweeper's lease so that
about this many tries reach Redis per SWEEP_INTERVAL, whatever the size of the fleet."""

QUIET_SWEEP_INTERVAL = 30.0
"""Seconds between the lease holder's sweeps while it counts no started chunk (a queue that appeared
since it last read the list of queues may still hold some)."""


class NoDeathPenalty(BaseDeathPenalty):
    """Chunk jobs get no job-wide alarm: each task has its own limit (worker.execute.Watchdog),
    so one runaway task fails alone instead of taking its whole chunk down."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


PUBSUB_WAKE = 1.0
"""Seconds the command-channel listener waits for a message before it checks whether to stop."""

_early_stop: list[int] = []
"""Stop signals received before RQ installed its handlers (see defer_stop_signals)."""


def defer_stop_signals() -> None:
    """Remember SIGTERM/SIGINT until RQ's own handlers are installed, instead of losing them.

    A worker process forked by the supervisor inherits the supervisor's handler, and RQ registers
    the worker (so it looks ready) before `work()` installs its handlers: a stop requested in
    between was swallowed, and the worker then served forever.
    """

    def remember(signum: int, _frame: FrameType | None) -> None:
        _early_stop.append(signum)

    signal.signal(signal.SIGTERM, remember)
    signal.signal(signal.SIGINT, remember)


class ChunkWorker(ResilientLoop, SimpleWorker):
    """A SimpleWorker (no fork per job: chunks are our unit of isolation) that

    - deserializes with JSON and runs only SafeJob's allowlisted function;
    - heartbeats from a thread while a chunk runs, with a short TTL, so that a killed worker's
      chunk is seen as abandoned within seconds instead of RQ's timeout + 60 s;
    - advertises its slots and catalogue in RQ's own worker hash, for the dispatcher, and keeps
      that registration alive (restoring it if removed) from the same thread, busy or idle;
    - rides out Redis outages, idle or busy, instead of quitting (worker.resilience).

    Its per-job bookkeeping is RQ's own; FastChunkWorker's is the fast path (see worker_class).
    """

    death_penalty_class = NoDeathPenalty
    max_connection_wait_time = 10.0
    """RQ's idle reconnect back-off is capped at 60 s; a healed Redis should be seen sooner."""

    def __init__(self, runtime: Runtime, connection: redis.Redis, queue_names: list[str], **kwargs: Any) -> None:
        served = served_queues(queue_names, runtime.catalogue.names())  # a user task's chunks have a queue of their own
        queues = [Queue(name, connection=connection, job_class=SafeJob, serializer=ChunkJobSerializer)
                  for name in served]  # fmt: skip
        super().__init__(
            queues,
            name=runtime.name,
            connection=connection,
            job_class=SafeJob,
            serializer=ChunkJobSerializer,
            default_result_ttl=0,
            worker_ttl=max(30, runtime.settings.heartbeat_ttl * 3),
            # One run per queue per interval for the fleet (clean_registries holds RQ's lock that long).
            # It also recovers a chunk popped but never started (RQ's intermediate queue), e.g. when
            # Redis ran out of memory between the pop and the start: keep it as short as before.
            maintenance_interval=max(5, runtime.settings.heartbeat_ttl),
            **kwargs,
        )
        self.runtime = runtime
        self.replica_wait = ReplicaWait.from_settings(runtime.settings)
        self._beat_thread: threading.Thread | None = None
        self._beat_job: Job | None = None
        self._beat_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beat_failing = False
        self._beat_wake = threading.Event()
        self._next_tick = 0.0
        self._chunks_started = 0
        self._renewed_job: Job | None = None
        self._advertisement = advertisement(runtime, getattr(self, "_conn_name", None))
        sets = [keys.RQ_WORKERS, *(keys.rq_workers_by_queue_key(name) for name in self.queue_names())]
        wip = [keys.rq_started_key(name) for name in self.queue_names()]
        self._liveness = LivenessBeat(connection, self.name, self.key, sets, wip, self.worker_ttl + 60)
        self.sweeper = Sweeper(connection, self.name, SafeJob, ChunkJobSerializer)
        self.stop_reason = StopReason()

    def _set_ip_address(self, connection: redis.Redis) -> None:
        """Replaces BaseWorker._set_ip_address: names every connection of this worker (CLIENT SETNAME
        on each connect, reconnections included, not only the first as RQ does) so that the fleet's
        sweeper sees this process's connections (worker.sweeper), and reads the address with CLIENT
        INFO instead of a CLIENT LIST of every client. A Redis that refuses the name leaves the
        connections unnamed: this worker's chunks are then recovered by their heartbeat TTL."""
        self._conn_name: str | None = client_name(self.name)
        self.ip_address = "unknown"
        try:
            connection.client_setname(self._conn_name)
        except redis.ResponseError as exc:
            log.warning("worker %s: Redis refuses CLIENT SETNAME (%s): if this worker dies, its chunk runs again "
                        "only after its heartbeat TTL", self.name, exc)  # fmt: skip
            self._conn_name = None
            return
        pool = connection.connection_pool
        pool.connection_kwargs["client_name"] = self._conn_name  # RQ sets its socket timeout the same way
        for idle in list(getattr(pool, "_available_connections", ())):
            idle.client_name = self._conn_name
        try:
            info: dict[str, Any] = connection.client_info()
            self.ip_address = str(info.get("addr", "unknown"))
        except redis.ResponseError:
            pass

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, except the idle loop's own (no timeout, no pipeline) once the heartbeat
        thread runs: that thread keeps the registration, idle or busy, and the main thread's HSET and
        EXPIRE around every blocking dequeue were a large part of an idle worker's commands."""
        if timeout is None and pipeline is None and self._beat_thread is not None and self._beat_thread.is_alive():
            return
        super().heartbeat(timeout, pipeline)

    def clean_registries(self) -> None:
        """Replaces BaseWorker.clean_registries: RQ's registry maintenance for each queue, run by one
        worker of the fleet per interval. RQ releases its lock as soon as a run ends, so every worker
        ran it every interval (and each run costs one EXISTS per registered worker); the lock is held
        for the interval instead. Abandoned chunks are not left to it: the sweeper finds them."""
        for queue in self.queues:
            if self.connection.set(queue.registry_cleaning_key, self.name, nx=True, ex=self.maintenance_interval):
                self.log.info("Worker %s: cleaning registries for queue: %s", self.name, queue.name)
                clean_registries(queue, [*ABANDONMENT_HANDLERS, *self._exc_handlers])
                clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
        self.last_cleaned_at = rq_now()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop (through ResilientLoop), noting why it ended (see stop_reason)."""
        with self.stop_reason.watching(self.log):
            return bool(super().work(*args, **kwargs))

    def _install_signal_handlers(self) -> None:
        """RQ's handlers (warm, then cold shutdown), then honour a stop that arrived before them."""
        super()._install_signal_handlers()  # type: ignore[no-untyped-call]
        if _early_stop:
            self.stop_reason.signalled(_early_stop[0])
            self._stop_requested = True

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's warm shutdown, remembering the signal for the stop line."""
        self.stop_reason.signalled(signum)
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold shutdown, remembering the signal for the stop line (RQ ignores a repeat
        within a second: it then returns instead of raising)."""
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            self.stop_reason.signalled(signum, cold=True)
            raise

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Overrides SimpleWorker's timeout + 60 s: our heartbeat thread refreshes it while busy."""
        return self.runtime.settings.heartbeat_ttl

    def _start_ttl(self) -> int:
        """The same for every job, so LeanBookkeeping can start a job in the round trip that reads it."""
        return self.runtime.settings.heartbeat_ttl

    def _start_probe(self, job_id: str) -> tuple[str, str] | None:
        """The batch's cancel mark, read when the chunk starts instead of by the job function after."""
        return cancel_probe(job_id)

    @outage_exits
    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker.execute_job, with the heartbeat thread beating for this job while it runs.

        One thread for the worker's life: starting a thread per job cost ~0.1 ms per chunk, which
        is a sixth of a whole round trip at chunk size 1.
        """
        if not job.origin:  # a planted hash without one: file its failure under the queue it came from
            job.origin = queue.name
        self._start_heartbeat_thread()
        with self._beat_lock:
            self._beat_job = job
        self._chunks_started += 1
        if self._next_tick - time.monotonic() > PULSE_INTERVAL:
            self._beat_wake.set()  # pulse from the start rather than at the next idle beat
        try:
            super().execute_job(job, queue)
        finally:
            with self._beat_lock:  # a beat in flight finishes before the job's keys go
                self._beat_job = None

    def _start_heartbeat_thread(self) -> None:
        if self._beat_thread is None:
            self._beat_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
            self._beat_thread.start()

    def _heartbeat_loop(self) -> None:
        """The heartbeat thread: one script per tick (worker.liveness) keeps this worker registered,
        pulses while it runs a chunk, and takes part in the fleet's sweeper lease; the lease holder
        sweeps (worker.sweeper).

        Ticks come every PULSE_INTERVAL while a chunk runs (the chunk's RQ heartbeat and the
        registration every heartbeat interval); every SWEEP_INTERVAL for the lease holder while
        chunks are started anywhere; for an idle worker while chunks are started, often enough that
        the fleet as a whole tries for a lapsed lease a few times per SWEEP_INTERVAL; otherwise
        every heartbeat TTL / IDLE_BEATS_PER_TTL. So an idle fleet costs one script per worker per
        beat, and a dead worker's chunk is found within about a second whoever sweeps.

        Registration: RQ's own heartbeats come from the main thread between blocking dequeues, and
        a chunk's start sets the record to expire after the (short) heartbeat TTL, so after a run of
        short chunks the record could expire while the worker idles. The tick that follows a chunk's
        start or end renews it with RQ's worker TTL, and puts back anything removed from outside.
        """
        settings = self.runtime.settings
        idle_beat = max(settings.heartbeat_interval, settings.heartbeat_ttl / IDLE_BEATS_PER_TTL)
        next_beat = 0.0
        last_sweep = -QUIET_SWEEP_INTERVAL
        was_busy = False
        seen_chunks = 0
        workers = 1
        delay = 0.0
        while True:
            self._next_tick = time.monotonic() + delay
            self._beat_wake.wait(delay)
            self._beat_wake.clear()
            now = time.monotonic()
            with self._beat_lock:
                if self._beat_stop.is_set():  # teardown is about to mark the record dead
                    return
                # Busy: running a chunk now, or ran one since the last tick (short chunks end
                # between ticks; a stream of them keeps the busy cadence).
                busy = self._beat_job is not None or self._chunks_started != seen_chunks
                seen_chunks = self._chunks_started
                renew = now >= next_beat or (busy and not was_busy)
                reply = self.beat(renew)
            was_busy = busy
            if reply is None:  # Redis unreachable or refusing: try again at the next interval
                delay = settings.heartbeat_interval
                continue
            if renew:
                next_beat = now + (settings.heartbeat_interval if busy else idle_beat)
                workers = reply.workers or workers
            if reply.holder:
                self._watch_every_queue()
            if reply.holder and (reply.started or now - last_sweep >= QUIET_SWEEP_INTERVAL):
                last_sweep = now
                self._sweep()
            delay = next_beat - now
            if busy:
                delay = min(delay, PULSE_INTERVAL)
            if reply.started:
                alert = SWEEP_INTERVAL * max(1.0, workers / ALERT_WORKERS_PER_INTERVAL)
                delay = min(delay, SWEEP_INTERVAL if reply.holder else alert)
            delay = max(0.0, delay - (time.monotonic() - now))

    def beat(self, renew: bool = True) -> TickReply | None:
        """One tick (see _heartbeat_loop); None if Redis is unreachable or refused it.

        Called by the heartbeat thread under the beat lock.
        """
        job = self._beat_job
        lease_ms = (int(LEASE_TTL * 1000), int(self._calm_lease() * 1000))
        try:
            # The chunk's own heartbeat only for a chunk already running at the previous renewal: a
            # chunk that just started was stamped by its start, and a beat racing the end of a short
            # chunk would write its execution record back after the finish deleted it.
            execution = self._running_execution()
            if renew and job is not None and job is self._renewed_job and execution is not None:
                self.maintain_heartbeats(job, *([execution] if RQ3 else []))
            if renew:
                self._renewed_job = job
            state = self.get_state()
            fields = self._registration() if renew else None
            pulse_ms = int(PULSE_TTL * 1000) if job is not None else 0
            reply = self._liveness(str(getattr(state, "value", state)), fields, pulse_ms, lease_ms)
        except (redis.RedisError, OSError) as exc:
            # Once per outage: the work loop reports the outage and the recovery itself.
            level = logging.DEBUG if self._beat_failing else logging.WARNING
            log.log(level, "worker %s: heartbeat failed (%s); retrying", self.name, exc)
            self._beat_failing = True
            return None
        self._beat_failing = False
        if reply.restored:
            log.warning("worker %s: its registration had been removed from Redis; restored", self.name)
        return reply

    def _calm_lease(self) -> float:
        """The sweeper lease's lifetime while no chunk is started: past the holder's next idle beat."""
        settings = self.runtime.settings
        return max(settings.heartbeat_interval, settings.heartbeat_ttl / IDLE_BEATS_PER_TTL) + LEASE_TTL

    def _running_execution(self) -> Any:
        """The execution this worker runs, None when idle (without RQ 3's read of Redis when idle)."""
        worker: Any = self  # RQ 3's attributes are unknown to RQ 2's types
        return next(iter(worker.executions.values()), None) if RQ3 else worker.execution

    def _registration(self) -> dict[str, object]:
        """Every field of this worker's record that register_birth writes: RQ's, then ours."""
        return {**self.serialize(), **self._advertisement}

    def _watch_every_queue(self) -> None:
        """While this worker holds the lease, its ticks count the started chunks of every queue."""
        try:
            queues = self.sweeper.queues()
        except (redis.RedisError, OSError):
            return
        self._liveness.wip_everywhere = [keys.rq_started_key(q) for q in queues]

    def _sweep(self) -> None:
        """Look for abandoned chunks fleet-wide (this worker holds the sweeper lease)."""
        try:
            self.sweeper.sweep()
        except (redis.RedisError, OSError) as exc:
            log.warning("worker %s: abandoned-chunk sweep failed (%s); retrying", self.name, exc)
        except Exception:  # a damaged job must not stop the sweep, nor the worker
            log.exception("worker %s: abandoned-chunk sweep failed", self.name)

    def unsubscribe(self) -> None:
        """Replaces BaseWorker.unsubscribe: the same, with the wait for RQ's pub/sub thread bounded.
        redis-py 8's PubSubWorkerThread.stop() joins the thread, which waits up to RQ's 60 s sleep
        for a subscription confirmation that a worker stopping right after it started may never
        get: a burst worker, or one stopped just after it registered, hung that long."""
        thread = self.pubsub_thread
        if thread is not None and self.pubsub is not None:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub.unsubscribe()  # type: ignore[no-untyped-call]
            stop_pubsub_thread(thread, 1)
            self.pubsub.close()

    def teardown(self) -> None:
        """RQ's teardown, after stopping the heartbeat thread (kept through a Redis outage, after
        which the worker enters its loop again and needs it)."""
        if not self._redis_outage:
            self.stop_heartbeat()
        super().teardown()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread; returns once no beat is in flight (none will follow)."""
        self._beat_stop.set()
        self._beat_wake.set()
        with self._beat_lock:
            pass

    def subscribe(self) -> None:
        """RQ's subscribe to the worker's command channel, with the listener thread waking every second
        instead of RQ's 60 s: redis-py 8.2's PubSubWorkerThread.stop() waits for the thread, which after
        RQ's unsubscribe can sit out that whole wait, so every worker stop took up to a minute."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def register_birth(self) -> None:
        """RQ's registration, plus our fields: host, pid, slots and the tasks this worker serves.

        Under the beat lock, so the heartbeat thread (which outlives a Redis outage) cannot restore
        the old record between the namesake check and RQ's own.
        """
        with self._beat_lock:
            self._clear_dead_namesake()
            try:
                super().register_birth()  # type: ignore[no-untyped-call]
            except ValueError as exc:  # RQ: "There exists an active worker named ... already"
                raise NameInUse(f"{exc}: pick another --name, or stop that worker first") from None
            self.connection.hset(self.key, mapping=self._advertisement)  # type: ignore[arg-type]
        self._start_heartbeat_thread()

    def _clear_dead_namesake(self) -> None:
        """Drop a registration under our name that no live process owns (see dead_namesake).

        RQ refuses to start while a worker of the same name is registered, and a SIGKILLed worker
        stays registered for worker_ttl + 60 s; a replacement started under the same --name (by the
        supervisor, or by hand) would otherwise fail for that long.
        """
        raw: dict[bytes, bytes] = self.connection.hgetall(self.key)  # type: ignore[assignment]
        fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        if not fields or "death" in fields:
            return  # RQ's own check lets the name be taken
        reason = dead_namesake(fields, socket.gethostname(), self.runtime.settings.heartbeat_ttl)
        if reason is not None:
            log.warning("worker %s: replacing a registration under this name: %s", self.name, reason)
            self.connection.delete(self.key)


class FastChunkWorker(ChunkWorker, LeanBookkeeping):
    """A ChunkWorker whose per-job bookkeeping takes a few round trips instead of RQ's ~60
    (worker.lean.LeanBookkeeping); only on the RQ series common.rqcompat lists as verified."""


def worker_class() -> type[ChunkWorker]:
    """FastChunkWorker where the fast path is verified for the installed RQ and not switched off;
    ChunkWorker (RQ's own per-job path) otherwise, saying why once in the log."""
    refusal = fast_path_refusal()
    if refusal is None:
        return FastChunkWorker
    log.warning("worker: RQ's own per-job path (no fast path): %s", refusal)
    return ChunkWorker


class NameInUse(ValueError):
    """A live worker is registered under the name this one was given."""


def advertisement(runtime: Runtime, connection_name: str | None = None) -> dict[str, str]:
    """The fields a worker adds to its RQ worker hash (the connection name only if its connections carry one)."""
    prefix = keys.WORKER_FIELD_PREFIX
    fields = {
        f"{prefix}host": socket.gethostname(),
        f"{prefix}pid": str(os.getpid()),
        f"{prefix}slots": str(runtime.slots),
        f"{prefix}tasks": json.dumps(runtime.catalogue.names()),
    }
    if connection_name is not None:
        fields[keys.CONNECTION_FIELD] = connection_name
    return fields
