"""The RQ worker that runs chunks: RQ's SimpleWorker, configured for safety and fast recovery."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.timeouts import BaseDeathPenalty

from common import keys
from common.jobdata import ChunkJobSerializer
from common.routing import served_queues
from common.rqcompat import RQ3, fast_path_refusal
from worker.cancel import cancel_probe
from worker.job import SafeJob
from worker.lean import LeanBookkeeping
from worker.liveness import LivenessBeat, dead_namesake
from worker.resilience import OUTAGE_ERRORS, ResilientLoop, outage_exits
from worker.runtime import Runtime
from worker.stopreason import StopReason

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
            maintenance_interval=max(5, runtime.settings.heartbeat_ttl),
            **kwargs,
        )
        self.runtime = runtime
        self._beat_thread: threading.Thread | None = None
        self._beat_job: Job | None = None
        self._beat_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beat_failing = False
        self._advertisement = advertisement(runtime)
        sets = [keys.RQ_WORKERS, *(keys.rq_workers_by_queue_key(name) for name in self.queue_names())]
        self._liveness = LivenessBeat(connection, self.key, sets, self.worker_ttl + 60)
        self.stop_reason = StopReason()

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
        """Every interval: beat for the running chunk, keep this worker registered, and look for
        other workers' abandoned chunks.

        Registration: RQ's own heartbeats come from the main thread between blocking dequeues, and
        a chunk's start sets the record to expire after the (short) heartbeat TTL, so after a run of
        short chunks the record could expire while the worker idles. This beat renews it with RQ's
        worker TTL, idle or busy, and puts back anything removed from outside.

        The sweep runs here rather than only in RQ's maintenance, which an idle worker reaches only
        between its blocking dequeues: a dead worker's chunk is then re-queued by any live worker
        within its heartbeat TTL plus one interval, whether or not a dispatcher is waiting.
        """
        while not self._beat_stop.wait(self.runtime.settings.heartbeat_interval):
            with self._beat_lock:
                if self._beat_stop.is_set():  # teardown is about to mark the record dead
                    return
                reachable = self.beat()
            if reachable:
                self._recover_abandoned_chunks()

    def beat(self) -> bool:
        """One heartbeat: the running chunk's, and the registration's; False if Redis is unreachable.

        Called by the heartbeat thread under the beat lock.
        """
        job = self._beat_job
        try:
            execution = self._running_execution()
            if job is not None and execution is not None:
                self.maintain_heartbeats(job, *([execution] if RQ3 else []))
            state = self.get_state()
            restored = self._liveness(str(getattr(state, "value", state)), self._registration())
        except (redis.RedisError, OSError) as exc:
            # Once per outage: the work loop reports the outage and the recovery itself.
            level = logging.DEBUG if self._beat_failing else logging.WARNING
            log.log(level, "worker %s: heartbeat failed (%s); retrying", self.name, exc)
            self._beat_failing = True
            return not isinstance(exc, OUTAGE_ERRORS)
        self._beat_failing = False
        if restored:
            log.warning("worker %s: its registration had been removed from Redis; restored", self.name)
        return True

    def _running_execution(self) -> Any:
        """The execution this worker runs, None when idle (without RQ 3's read of Redis when idle)."""
        worker: Any = self  # RQ 3's attributes are unknown to RQ 2's types
        return next(iter(worker.executions.values()), None) if RQ3 else worker.execution

    def _registration(self) -> dict[str, object]:
        """Every field of this worker's record that register_birth writes: RQ's, then ours."""
        return {**self.serialize(), **self._advertisement}

    def _recover_abandoned_chunks(self) -> None:
        """RQ's started-registry cleanup on our queues: expired chunks go back on the queue (Retry)."""
        for queue in self.queues:
            try:
                queue.started_job_registry.cleanup()
            except (redis.RedisError, OSError) as exc:
                log.warning("worker %s: abandoned-chunk sweep failed (%s); retrying", self.name, exc)
                return
            except Exception:  # a damaged job must not stop the sweep, nor the worker
                log.exception("worker %s: abandoned-chunk sweep of %s failed", self.name, queue.name)

    def teardown(self) -> None:
        """RQ's teardown, after stopping the heartbeat thread (kept through a Redis outage, after
        which the worker enters its loop again and needs it)."""
        if not self._redis_outage:
            self.stop_heartbeat()
        super().teardown()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread; returns once no beat is in flight (none will follow)."""
        self._beat_stop.set()
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


def advertisement(runtime: Runtime) -> dict[str, str]:
    """The fields a worker adds to its RQ worker hash."""
    prefix = keys.WORKER_FIELD_PREFIX
    return {
        f"{prefix}host": socket.gethostname(),
        f"{prefix}pid": str(os.getpid()),
        f"{prefix}slots": str(runtime.slots),
        f"{prefix}tasks": json.dumps(runtime.catalogue.names()),
    }
