"""The RQ worker that runs chunks: RQ's SimpleWorker, configured for safety and fast recovery."""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Any

import redis
from rq import Queue
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
from common.rqcompat import fast_path_refusal
from worker.cancel import cancel_probe
from worker.job import SafeJob
from worker.lean import LeanBookkeeping
from worker.liveness import LivenessBeat
from worker.registration import Registration, advertisement
from worker.resilience import ResilientLoop, outage_exits, stop_pubsub_thread
from worker.runtime import Runtime
from worker.stopreason import StopReason
from worker.sweeper import PULSE_INTERVAL, Sweeper

log = logging.getLogger("worker")


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


class ChunkWorker(ResilientLoop, Registration):
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
        queues = [
            Queue(name, connection=connection, job_class=SafeJob, serializer=ChunkJobSerializer) for name in served
        ]
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
        self._init_beat()
        self._advertisement = advertisement(runtime, getattr(self, "_conn_name", None))
        sets = [keys.RQ_WORKERS, *(keys.rq_workers_by_queue_key(name) for name in self.queue_names())]
        wip = [keys.rq_started_key(name) for name in self.queue_names()]
        self._liveness = LivenessBeat(connection, self.name, self.key, sets, wip, self.worker_ttl + 60)
        self.sweeper = Sweeper(connection, self.name, SafeJob, ChunkJobSerializer)
        self.stop_reason = StopReason()

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

        One thread for the worker's life: starting a thread per job was a large share of a whole
        round trip at chunk size 1 (docs/performance.md).
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

    def unsubscribe(self) -> None:
        """Replaces BaseWorker.unsubscribe: the same, with the wait for RQ's pub/sub thread bounded.
        redis-py 8's PubSubWorkerThread.stop() joins the thread, which waits up to RQ's 60 s sleep
        for a subscription confirmation that a worker stopping right after it started may never
        get: a burst worker, or one stopped just after it registered, hung that long. The pub/sub is
        closed here only once the thread has ended: PubSub.reset() is not thread-safe, and two closes
        at once raised AttributeError out of the worker's teardown."""
        thread = self.pubsub_thread
        if thread is not None and self.pubsub is not None:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub.unsubscribe()  # type: ignore[no-untyped-call]
            stop_pubsub_thread(thread, 1)
            if not thread.is_alive():  # else its own loop closes the pub/sub as it ends: never both at once
                self.pubsub.close()

    def teardown(self) -> None:
        """RQ's teardown, after stopping the heartbeat thread (kept through a Redis outage, after
        which the worker enters its loop again and needs it)."""
        if not self._redis_outage:
            self.stop_heartbeat()
        super().teardown()

    def subscribe(self) -> None:
        """RQ's subscribe to the worker's command channel, with the listener thread waking every second
        instead of RQ's 60 s: redis-py 8.2's PubSubWorkerThread.stop() waits for the thread, which after
        RQ's unsubscribe can sit out that whole wait, so every worker stop took up to a minute."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class FastChunkWorker(ChunkWorker, LeanBookkeeping):
    """A ChunkWorker whose per-job bookkeeping takes a few round trips instead of RQ's dozens of
    commands (worker.lean.LeanBookkeeping); only on the RQ series common.rqcompat lists as verified."""


def worker_class() -> type[ChunkWorker]:
    """FastChunkWorker where the fast path is verified for the installed RQ and not switched off;
    ChunkWorker (RQ's own per-job path) otherwise, saying why once in the log."""
    refusal = fast_path_refusal()
    if refusal is None:
        return FastChunkWorker
    log.warning("worker: RQ's own per-job path (no fast path): %s", refusal)
    return ChunkWorker
