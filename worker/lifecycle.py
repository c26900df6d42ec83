"""What a worker says about its own life: it waits for Redis at start, then a start line and a stop line."""

from __future__ import annotations

import logging
import os
import signal
import time

import redis

from common.connection import connect, describe_redis_error, redact_url
from common.errors import RedisUnavailable
from common.settings import Settings
from worker.registration import NameInUse
from worker.runner import ChunkWorker

log = logging.getLogger("worker.lifecycle")
log.setLevel(logging.INFO)  # the start and stop lines show at the default (warning) level too

EXIT_STOPPED_BY_ERROR = 1
"""A worker process stopped because of an error (its name taken, an unexpected exception)."""
RETRY_FIRST = 0.25
"""Seconds before the second attempt to reach Redis at start."""
RETRY_MAX = 2.0
"""Longest pause between attempts, so a Redis that comes up is seen within that."""


def await_redis(settings: Settings) -> None:
    """PING Redis until it answers, for up to settings.wait_for_redis seconds.

    Errors that waiting cannot cure (a wrong password, a TLS failure) end the wait at once.
    Raises RedisUnavailable (exit 3) with the last error and how to wait longer.
    """
    client = connect(settings)
    deadline = time.monotonic() + settings.wait_for_redis
    delay = RETRY_FIRST
    announced = False
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.RedisError, OSError) as exc:
                error = describe_redis_error(settings.redis_url, exc)
                if not _may_heal(exc):
                    raise error from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RedisUnavailable(f"{error} ({_how_to_wait(settings)})") from None
                if not announced:
                    log.warning("waiting for Redis, up to %g s: %s", settings.wait_for_redis, error)
                    announced = True
                time.sleep(min(delay, left))
                delay = min(RETRY_MAX, delay * 2)
    finally:
        client.close()


def _may_heal(exc: BaseException) -> bool:
    """Whether the error can go away by itself (Redis starting, restarting, loading, network)."""
    if isinstance(exc, redis.AuthenticationError):
        return False
    text = str(exc)
    if "SSL" in text or "certificate" in text.lower():
        return False
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))


def _how_to_wait(settings: Settings) -> str:
    if settings.wait_for_redis <= 0:
        return "not waiting for it: --wait-for-redis / DW_WAIT_FOR_REDIS is 0"
    return f"gave up after waiting {settings.wait_for_redis:g} s; --wait-for-redis S / DW_WAIT_FOR_REDIS waits longer"


def announce_start(name: str, queues: list[str], offered: int, settings: Settings, slots: str) -> None:
    """The start line: who, what it serves, where."""
    url = redact_url(settings.redis_url)
    line = f"worker {name} started: queues {','.join(queues)}, {offered} tasks offered, {slots}, Redis {url}"
    log.info("%s, pid %d", line, os.getpid())


def announce_stop(name: str, reason: str) -> None:
    """The stop line, with why."""
    log.info("worker %s stopped: %s", name, reason)


def work_and_report(worker: ChunkWorker, burst: bool, logging_level: str) -> int:
    """Run the worker's loop, then the stop line; returns the process's exit code (exceptions other
    than a taken name propagate, after the stop line)."""
    reason = worker.stop_reason
    try:
        worker.work(burst=burst, logging_level=logging_level)
    except NameInUse as exc:
        reason.failed(exc)
    except KeyboardInterrupt:
        reason.signalled(signal.SIGINT)
        announce_stop(worker.name, reason.describe(burst))
        raise
    except BaseException as exc:
        if not isinstance(exc, SystemExit):  # a cold shutdown: the reason is the signal
            reason.failed(exc)
        announce_stop(worker.name, reason.describe(burst))
        raise
    announce_stop(worker.name, reason.describe(burst))
    return 0 if reason.error is None else EXIT_STOPPED_BY_ERROR
