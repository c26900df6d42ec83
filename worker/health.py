"""The `worker --check` probe: is a worker of this host registered in Redis and heartbeating?"""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass

import click
import redis
from rq.utils import utcparse
from rq.worker_registration import REDIS_WORKER_KEYS

from common import keys
from common.connection import connect
from common.settings import Settings

HEARTBEAT_MAX_AGE = 60.0
"""Seconds since a worker's last heartbeat after which it counts as hung (at least; see heartbeat_max_age)."""

CHECK_HEALTHY = 0
"""A worker of this host is registered and heartbeating."""
CHECK_NO_WORKER = 1
"""No worker of this host is registered (not started yet, or it stopped)."""
CHECK_STALE = 5
"""Workers of this host are registered, but none has heartbeated recently (hung or frozen)."""


@dataclass(frozen=True)
class WorkerBeat:
    """One registered worker as its RQ worker hash describes it."""

    name: str
    host: str
    state: str
    heartbeat_age: float | None
    """Seconds since its last heartbeat; None if it never recorded one."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a health check: an exit code, a one-line explanation, the workers seen."""

    code: int
    message: str
    workers: tuple[WorkerBeat, ...]


def heartbeat_max_age(settings: Settings) -> float:
    """How old a live worker's last heartbeat can be under these settings.

    A worker's heartbeat thread writes its heartbeat every heartbeat_interval, idle or busy; RQ's
    own loop (the only source in workers of earlier versions) each time its blocking dequeue times
    out, every worker TTL - 15 s (ChunkWorker's TTL is max(30, 3 * heartbeat_ttl)). Missing two of
    the latter in a row is a hang, not a slow network.
    """
    worker_ttl = max(30, 3 * settings.heartbeat_ttl)
    return max(HEARTBEAT_MAX_AGE, 2.0 * (worker_ttl - 15) + 15)


def registered_workers(client: redis.Redis, now: datetime.datetime) -> list[WorkerBeat]:
    """Every worker in RQ's registry whose hash still exists (an expired hash means a dead worker)."""
    raw_keys: set[bytes] = client.smembers(REDIS_WORKER_KEYS)  # type: ignore[assignment]
    names = sorted(k.decode() for k in raw_keys)
    pipe = client.pipeline(transaction=False)
    for key in names:
        pipe.hgetall(key)
    beats = []
    for key, fields in zip(names, pipe.execute(), strict=True):
        if not fields:
            continue
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        if "death" in text:
            continue
        beats.append(
            WorkerBeat(
                name=key.removeprefix(keys.RQ_WORKER_PREFIX),
                host=text.get(keys.WORKER_FIELD_PREFIX + "host") or text.get("hostname", ""),
                state=text.get("state", "?"),
                heartbeat_age=_age(text.get("last_heartbeat"), now),
            )
        )
    return beats


def check_host(
    client: redis.Redis, hostname: str, max_age: float = HEARTBEAT_MAX_AGE, now: datetime.datetime | None = None
) -> CheckResult:
    """Whether a worker advertising `hostname` is registered and heartbeated within `max_age` seconds.

    Redis errors propagate: the caller decides how an unreachable Redis is reported.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    mine = tuple(w for w in registered_workers(client, now) if w.host == hostname)
    if not mine:
        return CheckResult(CHECK_NO_WORKER, f"no worker of host {hostname} is registered", mine)
    fresh = [w for w in mine if w.heartbeat_age is not None and w.heartbeat_age <= max_age]
    if not fresh:
        ages = ", ".join(f"{w.name}: {_describe_age(w.heartbeat_age)}" for w in mine)
        return CheckResult(CHECK_STALE, f"workers of host {hostname} stopped heartbeating ({ages})", mine)
    listed = ", ".join(f"{w.name} ({w.state}, heartbeat {_describe_age(w.heartbeat_age)})" for w in fresh)
    return CheckResult(CHECK_HEALTHY, f"{len(fresh)} of {len(mine)} worker(s) of {hostname} alive: {listed}", mine)


def run_check(settings: Settings) -> int:
    """`worker --check`: print whether a worker of this host is alive; returns the exit code (0, 1 or
    5). An unusable Redis raises, for the CLI's error edge to describe (exit 3)."""
    client = connect(settings, socket_timeout=5.0)
    try:
        result = check_host(client, socket.gethostname(), heartbeat_max_age(settings))
    finally:
        client.close()
    click.echo(("ok: " if result.code == CHECK_HEALTHY else "unhealthy: ") + result.message)
    return result.code


def _age(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, (now - utcparse(stamp)).total_seconds())
    except ValueError:
        return None


def _describe_age(age: float | None) -> str:
    return "never" if age is None else f"{age:.1f} s ago"
