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
from worker.cancel import cancel_probe
from worker.job import SafeJob
from worker.lean import LeanBookkeeping
from worker.resilience import ResilientLoop, outage_exits
from worker.runtime import Runtime

log = logging.getLogger("worker")


class NoDeathPenalty(BaseDeathPenalty):
    """Chunk jobs get no job-wide alarm: each task has its own limit (worker.execute.Watchdog),
    so one runaway task fails alone instead of taking its whole chunk down."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


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


class ChunkWorker(ResilientLoop, LeanBookkeeping, SimpleWorker):
    """A SimpleWorker (no fork per job: chunks are our unit of isolation) that

    - deserializes with JSON and runs only SafeJob's allowlisted function;
    - heartbeats from a thread while a chunk runs, with a short TTL, so that a killed worker's
      chunk is seen as abandoned within seconds instead of RQ's timeout + 60 s;
    - advertises its slots and catalogue in RQ's own worker hash, for the dispatcher;
    - spends a few round trips per job instead of RQ's ~60 (worker.lean.LeanBookkeeping);
    - rides out Redis outages, idle or busy, instead of quitting (worker.resilience).
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

    def _install_signal_handlers(self) -> None:
        """RQ's handlers (warm, then cold shutdown), then honour a stop that arrived before them."""
        super()._install_signal_handlers()  # type: ignore[no-untyped-call]
        if _early_stop:
            self._stop_requested = True

    def get_heartbeat_ttl(self, job: Job) -> int:
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
        """Beat for the running chunk, and look for other workers' abandoned chunks, every interval.

        The sweep runs here rather than only in RQ's maintenance, which an idle worker reaches only
        between its 15 s blocking dequeues: a dead worker's chunk is then re-queued by any live
        worker within its heartbeat TTL plus one interval, whether or not a dispatcher is waiting.
        """
        while not self._beat_stop.wait(self.runtime.settings.heartbeat_interval):
            with self._beat_lock:
                job = self._beat_job
                try:
                    if job is not None and self.execution is not None:
                        self.maintain_heartbeats(job)
                except (redis.RedisError, OSError) as exc:
                    log.warning("worker %s: heartbeat failed (%s); retrying", self.name, exc)
            self._recover_abandoned_chunks()

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
            self._beat_stop.set()
        super().teardown()

    def register_birth(self) -> None:
        """RQ's registration, plus our fields: host, pid, slots and the tasks this worker serves."""
        self._clear_dead_namesake()
        super().register_birth()  # type: ignore[no-untyped-call]
        self.connection.hset(self.key, mapping=advertisement(self.runtime))  # type: ignore[arg-type]
        self._start_heartbeat_thread()

    def _clear_dead_namesake(self) -> None:
        """Drop the registration of a killed process of this host that had our name.

        RQ refuses to start while a worker of the same name is registered, and a SIGKILLed worker
        stays registered for worker_ttl + 60 s; a replacement started under the same --name (by the
        supervisor, or by hand) would otherwise fail for that long.
        """
        prefix = keys.WORKER_FIELD_PREFIX
        raw: list[bytes | None] = self.connection.hmget(self.key, [f"{prefix}host", f"{prefix}pid"])  # type: ignore[assignment]
        host, pid = (None if v is None else v.decode() for v in raw)
        if host != socket.gethostname() or pid is None or not pid.isdigit() or int(pid) == os.getpid():
            return
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.warning("worker %s: replacing the registration of dead process %s", self.name, pid)
            self.connection.delete(self.key)
        except PermissionError:
            pass  # alive, under another user: RQ's own check will refuse the name


def advertisement(runtime: Runtime) -> dict[str, str]:
    """The fields a worker adds to its RQ worker hash."""
    prefix = keys.WORKER_FIELD_PREFIX
    return {
        f"{prefix}host": socket.gethostname(),
        f"{prefix}pid": str(os.getpid()),
        f"{prefix}slots": str(runtime.slots),
        f"{prefix}tasks": json.dumps(runtime.catalogue.names()),
    }
