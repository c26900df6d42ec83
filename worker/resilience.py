"""Keep a worker process alive through Redis outages, idle or busy, and through damaged jobs in maintenance.

Redis out of memory (`maxmemory` with `noeviction`: it refuses writes) counts as an outage: the
worker cannot publish results, so it keeps them nowhere, leaves the chunk started, waits until Redis
takes writes again, and the chunk is recovered and re-run like a dead worker's (its results are
never dropped: they are computed again).

RQ's work loop survives a connection error only while it waits for a job; a Redis error anywhere
else (heartbeat after a job, job bookkeeping, registry maintenance) reaches its bare `except:` and the
worker quits. The loop lets exactly one exception type through: SystemExit. So the methods it calls
turn an outage into `RedisOutage` (a SystemExit), the worker leaves RQ's loop without tearing down,
waits for Redis with back-off, and enters the loop again. The chunk that was running stays in RQ's
started registry; its heartbeat stops, so it is recovered and re-run like a killed worker's chunk.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis
from rq.exceptions import StopRequested
from rq.worker import WorkerStatus

from common import keys
from common.connection import is_out_of_memory

log = logging.getLogger("worker")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
"""Errors that mean Redis is unreachable or restarting (BusyLoadingError is a ConnectionError)."""

BACKOFF_FIRST = 0.5
"""Seconds before the first reconnection attempt."""
BACKOFF_MAX = 10.0
"""Longest pause between reconnection attempts, so a healed Redis is seen within seconds."""
RECURRENCE_WINDOW = 60.0
"""Seconds after an outage ended within which a new one counts as the same trouble coming back."""


def stop_pubsub_thread(thread: Any, wait: float) -> None:
    """Stop RQ's command-channel listener, waiting at most `wait` seconds: redis-py 8's stop() joins
    the thread (which may sleep in a long read); before redis-py 6 stop() takes no timeout and never
    waits."""
    try:
        thread.stop(timeout=wait)
    except TypeError:
        thread.stop()


def is_outage(exc: BaseException) -> bool:
    """True if `exc` means Redis cannot take our writes for now: unreachable, restarting, or out of memory."""
    return isinstance(exc, OUTAGE_ERRORS) or is_out_of_memory(exc)


class RedisOutage(SystemExit):
    """Carries a Redis outage out of RQ's work loop, whose bare `except:` lets only SystemExit pass."""

    def __init__(self, cause: BaseException) -> None:
        what = "out of memory (it refuses writes)" if is_out_of_memory(cause) else "unreachable"
        super().__init__(f"Redis {what}: {type(cause).__name__}: {cause}")
        self.cause = cause


def outage_exits(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a worker method so that a Redis outage inside it raises RedisOutage."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            self._redis_outage = True
            raise RedisOutage(exc) from exc

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def wait_for_redis(client: redis.Redis, name: str, stop_requested: Callable[[], bool], writable: bool = False) -> bool:
    """PING (with `writable`, a small write: Redis out of memory still answers PING) with exponential
    back-off until Redis answers; False if a stop was requested meanwhile."""
    delay = BACKOFF_FIRST
    started = time.monotonic()
    while not stop_requested():
        try:
            if writable:
                client.set(keys.write_probe_key(name), 1, ex=keys.WRITE_PROBE_TTL)
            else:
                client.ping()
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            what = "out of memory" if is_out_of_memory(exc) else "unreachable"
            log.warning("worker %s: Redis %s (%s); retrying in %.1f s", name, what, exc, delay)
            time.sleep(delay)
            delay = min(BACKOFF_MAX, delay * 2)
            continue
        back = "takes writes again" if writable else "is back"
        log.warning("worker %s: Redis %s after %.1f s; resuming", name, back, time.monotonic() - started)
        return True
    return False


class ResilientLoop:
    """Mixin for an RQ worker: survive Redis outages in any state, and damaged jobs during maintenance."""

    name: str
    connection: redis.Redis
    key: str
    _stop_requested: bool
    _state: Any
    execution: Any
    pubsub_thread: Any
    _redis_outage: bool = False
    last_cleaned_at: Any

    def work(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, entered again after each Redis outage until it ends on its own terms.

        Outages that follow each other closely (Redis out of memory takes a small write again as
        soon as a big one failed) are waited out with a growing pause, so the worker backs off
        instead of taking chunk after chunk that it cannot finish.
        """
        worked = False
        pause = 0.0
        resumed = -math.inf
        while True:
            try:
                worked = super().work(*args, **kwargs) or worked  # type: ignore[misc]
                return worked
            except (RedisOutage, redis.RedisError) as exc:
                outage = exc if isinstance(exc, RedisOutage) else RedisOutage(exc)
                if not is_outage(outage.cause):
                    raise
                self._redis_outage = True
                recurring = time.monotonic() - resumed < RECURRENCE_WINDOW
                pause = min(BACKOFF_MAX, max(BACKOFF_FIRST, pause * 2)) if recurring else 0.0
                log.warning(
                    "worker %s: %s; waiting for it to come back%s",
                    self.name,
                    outage,
                    f" (again: pausing {pause:.1f} s first)" if pause else "",
                )
                writable = is_out_of_memory(outage.cause)
                try:
                    time.sleep(pause)
                    if not wait_for_redis(self.connection, self.name, lambda: self._stop_requested, writable):
                        return worked
                except StopRequested:
                    return worked
                resumed = time.monotonic()
                # Our registration may have survived the outage (append-only file); it is ours.
                with contextlib.suppress(*OUTAGE_ERRORS):
                    self.connection.delete(self.key)
                self._redis_outage = False

    def _forget_current_job(self) -> None:
        # The chunk stays in RQ's started registry; without heartbeats it is recovered elsewhere.
        self.execution = None
        self._state = WorkerStatus.IDLE
        thread = getattr(self, "pubsub_thread", None)
        if thread is not None:
            stop_pubsub_thread(thread, 0)  # no wait: its blocking read ends on its own; a new one starts on re-entry
            self.pubsub_thread = None

    def teardown(self) -> None:
        """RQ's teardown, skipped while Redis is away (there is nothing to tell it)."""
        if self._redis_outage:
            self._forget_current_job()
            return
        try:
            super().teardown()  # type: ignore[misc]
        except OUTAGE_ERRORS as exc:
            log.warning("worker %s: could not unregister from Redis: %s", self.name, exc)

    @outage_exits
    def check_for_suspension(self, burst: bool) -> None:
        super().check_for_suspension(burst)  # type: ignore[misc]

    @outage_exits
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]

    @outage_exits
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]

    @outage_exits
    def run_maintenance_tasks(self) -> None:
        """RQ's registry maintenance; a job it cannot load is logged, never fatal to the worker."""
        try:
            super().run_maintenance_tasks()  # type: ignore[misc]
        except OUTAGE_ERRORS:
            raise
        except StopRequested:  # a warm shutdown asked for while idle is raised wherever the worker is
            raise
        except Exception as exc:
            self.last_cleaned_at = datetime.now(timezone.utc)  # retry at the next interval, not at once
            log.warning("worker %s: registry maintenance failed: %s: %s", self.name, type(exc).__name__, exc)
