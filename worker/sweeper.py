"""Find the chunks of workers that are gone and hand them back to their queue.

One worker of the fleet sweeps at a time (it holds `keys.SWEEPER_LEASE`, see worker.liveness), so
the cost of looking is the fleet's, not each worker's. A started chunk's worker is gone when

- **no Redis connection carries its name** (CLIENT LIST: one call for the whole fleet; a process
  that dies closes its sockets, and Redis drops them at once), **and**
- **its pulse has stopped** (`keys.pulse_key`: a worker running a chunk renews it every
  PULSE_INTERVAL; it lapses PULSE_TTL after the last renewal).

Either alone is not enough. A live worker whose connection was dropped (a proxy, CLIENT KILL, a
network reset) reconnects under its name at its next pulse, so its pulse never lapses; a live
worker that is merely slow or stalled (a task holding the GIL, a paused VM) keeps its connections,
so its name stays listed. Only a worker that advertises its connection name (`keys.CONNECTION_FIELD`,
written when its connections could be named) is judged this way. Everything else, and everything
when this Redis user may not run CLIENT LIST, falls to RQ's own rule: a chunk whose heartbeat is
older than `DW_HEARTBEAT_TTL` (a host that vanished, a network that dropped without a reset, whose
connections Redis still lists).

The pulses are read first (one EXISTS per busy worker); CLIENT LIST, whose reply grows with the
number of connections, is sent only when some pulse has stopped.

A chunk found abandoned is handed back (worker.handback) through RQ's `StartedJobRegistry.cleanup`, which re-queues
it (its Retry) or fails it, exactly as for an expired heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from rq.registry import StartedJobRegistry

from common import keys
from common.jobs import ABANDONMENT_HANDLERS
from worker.handback import hand_back, unregister

log = logging.getLogger("worker")

SWEEP_INTERVAL = 0.5
"""Seconds between sweeps while chunks are started (an idle fleet sweeps only at its beats)."""
PULSE_INTERVAL = 0.3
"""Seconds between the pulses of a worker that runs a chunk."""
PULSE_TTL = 1.0
"""Seconds after its last pulse that a worker's pulse counts as stopped."""
LEASE_TTL = 1.2
"""Seconds the sweeper's lease lasts while it sweeps at SWEEP_INTERVAL (renewed at each sweep)."""
QUEUE_LIST_REFRESH = 30.0
"""Seconds between reads of RQ's list of queues."""


def client_name(worker: str) -> str:
    """The Redis client name of a worker's connections: its name, with what CLIENT SETNAME refuses
    (spaces, control characters) replaced."""
    return "".join(c if "!" <= c <= "~" else "_" for c in worker) or "_"


@dataclass(frozen=True)
class Started:
    """One started-registry entry: a chunk being run, by whom, until when its heartbeat holds."""

    queue: str
    entry: str
    expires: float
    worker: str


def abandoned(
    started: Iterable[Started], connected: set[str], pulsing: set[str], conn_names: dict[str, str]
) -> list[Started]:
    """The entries whose worker is gone by the rule in the module docstring: it advertises a
    connection name, no connection carries it, and its pulse has stopped."""
    gone = []
    for item in started:
        name = conn_names.get(item.worker)
        if name and name not in connected and item.worker not in pulsing:
            gone.append(item)
    return gone


class Sweeper:
    """The sweep run by the lease holder: RQ's heartbeat rule, then the connection-and-pulse rule."""

    def __init__(
        self,
        client: redis.Redis,
        name: str,
        job_class: Any,
        serializer: Any,
        exception_handlers: list[Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.name = name
        self.job_class = job_class
        self.serializer = serializer
        self.exception_handlers = exception_handlers
        self.clock = clock
        self.client_list_allowed = True
        self._queues: list[str] = []
        self._queues_read = -QUEUE_LIST_REFRESH
        self._owners: dict[str, str] = {}

    def queues(self) -> list[str]:
        """Every queue RQ knows in this Redis (re-read every QUEUE_LIST_REFRESH seconds)."""
        now = time.monotonic()
        if now - self._queues_read >= QUEUE_LIST_REFRESH:
            members: set[bytes] = self.client.smembers(keys.RQ_QUEUES)  # type: ignore[assignment]
            self._queues = sorted(m.decode().removeprefix(keys.RQ_QUEUE_PREFIX) for m in members)
            self._queues_read = now
        return self._queues

    def sweep(self) -> int:
        """One sweep of every queue's started registry; returns how many chunks remain started."""
        queues = self.queues()
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(keys.rq_started_key(queue), 0, -1, withscores=True)
        started = self._started(queues, pipe.execute())
        now = self.clock()
        for queue in sorted({s.queue for s in started if s.expires < now}):
            registry = StartedJobRegistry(
                queue, connection=self.client, job_class=self.job_class, serializer=self.serializer
            )
            self._cleanup(registry, "heartbeat expired")
        live = [s for s in started if s.expires >= now]
        if live and self.client_list_allowed:
            self._judge(live)
        return len(live)

    def _started(self, queues: list[str], listed: list[list[tuple[bytes, float]]]) -> list[Started]:
        pairs = [(q, e.decode(), score) for q, entries in zip(queues, listed, strict=True) for e, score in entries]
        unknown = [entry for _q, entry, _s in pairs if entry not in self._owners]
        if unknown:
            pipe = self.client.pipeline(transaction=False)
            for entry in unknown:
                pipe.hget(keys.rq_execution_key_of_entry(entry), "worker_name")
            for entry, owner in zip(unknown, pipe.execute(), strict=True):
                if owner is not None:
                    self._owners[entry] = owner.decode()
        current = {entry for _q, entry, _s in pairs}
        self._owners = {entry: owner for entry, owner in self._owners.items() if entry in current}
        return [Started(q, entry, score, self._owners[entry]) for q, entry, score in pairs if entry in self._owners]

    def _judge(self, live: list[Started]) -> None:
        workers = sorted({s.worker for s in live})
        pipe = self.client.pipeline(transaction=False)
        for worker in workers:
            pipe.exists(keys.pulse_key(worker))
            pipe.hmget(keys.RQ_WORKER_PREFIX + worker, [keys.CONNECTION_FIELD, "birth"])
        replies = pipe.execute()
        pulsing = {w for w, alive in zip(workers, replies[0::2], strict=True) if alive}
        records = dict(zip(workers, replies[1::2], strict=True))
        conn_names = {w: name.decode() for w, (name, _birth) in records.items() if name}
        if not any(w in conn_names and w not in pulsing for w in workers):
            return  # every worker that could be judged pulses: no need to list the clients
        try:
            clients: list[dict[str, str]] = self.client.client_list()
        except redis.ResponseError as exc:  # an ACL user without CLIENT LIST
            self.client_list_allowed = False
            log.warning(
                "worker %s: Redis refuses CLIENT LIST (%s): chunks of dead workers are found by their "
                "heartbeat TTL only",
                self.name,
                exc,
            )
            return
        connected = {c.get("name", "") for c in clients}
        gone = abandoned(live, connected, pulsing, conn_names)
        for queue in sorted({s.queue for s in gone}):
            entries = [s.entry for s in gone if s.queue == queue]
            try:
                handlers = self.exception_handlers
                claimed = hand_back(self.client, queue, entries, self.job_class, self.serializer, handlers)
            except redis.RedisError:
                raise
            except Exception:  # a damaged job must not stop the sweep, nor the worker
                log.exception("worker %s: handing back chunks of %s failed", self.name, queue)
                continue
            if claimed:
                owners = ", ".join(sorted({s.worker for s in gone if s.queue == queue}))
                self._unregister({s.worker: records[s.worker][1] for s in gone if s.queue == queue})
                log.warning(
                    "worker %s: %d chunk(s) of %s handed back to %s: the worker is gone (no connection, no pulse)",
                    self.name,
                    claimed,
                    owners,
                    queue,
                )

    def _unregister(self, births: dict[str, bytes | None]) -> None:
        """Drop the registrations of workers found gone, so that the fleet's size (and `dispatcher
        status`) stop counting them at once instead of after their record's TTL."""
        unregister(self.client, births)

    def _cleanup(self, registry: StartedJobRegistry, why: str) -> None:
        try:
            registry.cleanup(exception_handlers=ABANDONMENT_HANDLERS + (self.exception_handlers or []))
        except redis.RedisError:
            raise
        except Exception:  # a damaged job must not stop the sweep, nor the worker
            log.exception("worker %s: sweep of %s (%s) failed", self.name, registry.name, why)
