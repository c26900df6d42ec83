"""The durable option (DW_MIN_REPLICAS): writes that count only once replicas have them.

Redis replicates asynchronously: a write the master acknowledged can be missing from the replica
that Sentinel promotes when the master dies. With `min_replicas` set, every enqueue and every result
write is followed on the same connection by `WAIT min_replicas timeout`, which returns once that many
replicas have acknowledged everything the connection wrote before it. Replication keeps order, so a
confirmed write also confirms every earlier write of that connection (a chunk's start, say).

A WAIT that times out (a replica down or lagging) does not undo the write, which is on the master:
the process logs a warning and goes on, as without the option. Redis's own `min-replicas-to-write`
refuses writes instead, for deployments that prefer to stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from common.settings import Settings

log = logging.getLogger("redis-dispatch")


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """How many replicas a write waits for, and for how long."""

    replicas: int
    timeout_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicaWait | None:
        """The wait the settings ask for; None without the durable option."""
        if settings.min_replicas <= 0:
            return None
        return cls(settings.min_replicas, max(1, int(settings.min_replicas_timeout * 1000)))

    @property
    def command(self) -> list[Any]:
        """The WAIT command, to send after the writes on their connection."""
        return ["WAIT", self.replicas, self.timeout_ms]

    def check(self, reply: Any, what: str) -> bool:
        """True if WAIT's reply shows enough replicas; else a warning naming `what` was written."""
        if isinstance(reply, Exception):
            raise reply
        confirmed = int(reply)
        if confirmed >= self.replicas:
            return True
        log.warning(
            "%s: only %d of %d replica(s) confirmed it within %d ms; it is on the master only",
            what,
            confirmed,
            self.replicas,
            self.timeout_ms,
        )
        return False
