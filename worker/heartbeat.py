"""The worker's heartbeat thread: registration, pulse and the sweeper's lease, one script per tick."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from rq import SimpleWorker
from rq.job import Job

from common import keys
from common.rqcompat import RQ3
from worker.liveness import LivenessBeat, TickReply
from worker.runtime import Runtime
from worker.sweeper import LEASE_TTL, PULSE_INTERVAL, PULSE_TTL, SWEEP_INTERVAL, Sweeper

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


class HeartbeatThread(SimpleWorker):
    """The part of ChunkWorker (worker.runner) that beats from its own thread, busy or idle.

    The worker sets `runtime`, `sweeper`, `_liveness` and `_advertisement`, and calls `_init_beat`,
    in its constructor; `execute_job` hands the running job to the thread under `_beat_lock`.
    """

    runtime: Runtime
    sweeper: Sweeper
    _liveness: LivenessBeat
    _advertisement: dict[str, str]

    def _init_beat(self) -> None:
        """The thread's state, before the thread starts (at registration or the first job)."""
        self._beat_thread: threading.Thread | None = None
        self._beat_job: Job | None = None
        self._beat_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beat_failing = False
        self._beat_wake = threading.Event()
        self._next_tick = 0.0
        self._chunks_started = 0
        self._renewed_job: Job | None = None

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

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread; returns once no beat is in flight (none will follow)."""
        self._beat_stop.set()
        self._beat_wake.set()
        with self._beat_lock:
            pass
