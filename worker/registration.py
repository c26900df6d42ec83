"""A worker's record in RQ's registry: its named connections, its birth and our advertised fields."""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

import redis

from common import keys
from worker.heartbeat import HeartbeatThread
from worker.liveness import dead_namesake
from worker.runtime import Runtime
from worker.sweeper import client_name

log = logging.getLogger("worker")


class NameInUse(ValueError):
    """A live worker is registered under the name this one was given."""


class Registration(HeartbeatThread):
    """The registration part of ChunkWorker (worker.runner): RQ's, with named connections, a dead
    namesake cleared first, and our fields (host, pid, slots, tasks) in RQ's worker hash."""

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
            log.warning(
                "worker %s: Redis refuses CLIENT SETNAME (%s): if this worker dies, its chunk runs again "
                "only after its heartbeat TTL",
                self.name,
                exc,
            )
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
            stale = [self.key]
            executions = keys.rq_worker_executions_key(self.name)
            if executions is not None and fields.get(keys.WORKER_FIELD_PREFIX + "pid") != str(os.getpid()):
                stale.append(executions)  # a dead process's (RQ 3): this one would be shown running them
            self.connection.delete(*stale)


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
