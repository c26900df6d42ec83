"""Alive means registered: the heartbeat thread's tick that keeps (and restores) a worker's registration,
pulses while it runs a chunk and takes part in the fleet's sweeper lease; and the rule that tells a
dead namesake's registration from a live one's."""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rq.utils import utcformat, utcparse

from common import keys

# One script per tick of the heartbeat thread (see ChunkWorker._heartbeat_loop), so that keeping
# registered, pulsing and taking part in the fleet's sweeper lease cost one round trip together.
# KEYS: the sweeper lease, this worker's pulse key, its hash, then its `nsets` sets (rq:workers
#       first, then rq:workers:<queue> for each queue), then the started registries of its queues
#       (of every queue, while it holds the lease).
# ARGV: 1 name, 2 held (1: this worker held the lease at its last tick), 3 lease ms while chunks are
#       started, 4 lease ms otherwise, 5 pulse ms (0: no chunk running), 6 beat (1: renew the
#       registration), 7 hash TTL, 8 state (written only into a hash that had lost fields), 9 nsets,
#       then the registration's field/value pairs: RQ's birth fields (Worker.serialize), our
#       advertisement, last_heartbeat.
# Overwriting fields that never change costs nothing and needs no read first; HSET counts what it
# had to add back, which is how a removal from outside shows up (the sets are checked only then).
# Returns {lease held, chunks started in the registries, workers registered (0 unless this tick
# renewed the registration while chunks are started), added}.
_TICK = """
local nsets = tonumber(ARGV[9])
local started = 0
for i = 4 + nsets, #KEYS do started = started + redis.call('ZCARD', KEYS[i]) end
local px = ARGV[4]
if started > 0 then px = ARGV[3] end
local holder = 0
if ARGV[2] == '1' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], px)
  holder = 1
elseif redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', px) then
  holder = 1
end
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[2], 1, 'PX', ARGV[5]) end
local added, workers = 0, 0
if ARGV[6] == '1' then
  added = redis.call('HSET', KEYS[3], unpack(ARGV, 10))
  if added > 0 then
    redis.call('HSETNX', KEYS[3], 'state', ARGV[8])
    for i = 4, 3 + nsets do added = added + redis.call('SADD', KEYS[i], KEYS[3]) end
  end
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  if started > 0 then workers = redis.call('SCARD', KEYS[4]) end
end
return {holder, started, workers, added}
"""


@dataclass(frozen=True)
class TickReply:
    """What one tick learnt."""

    holder: bool
    """This worker holds the fleet's sweeper lease."""
    started: int
    """Chunks started (by anyone) in the registries of this worker's queues."""
    workers: int
    """Workers registered in RQ's set (0 unless the tick renewed the registration while chunks are started)."""
    restored: int
    """Fields and set memberships of this worker's registration that were missing and were put back."""


class LivenessBeat:
    """One round trip that renews a worker's registration (putting back whatever was removed),
    pulses while it runs a chunk, and takes part in the fleet's sweeper lease."""

    def __init__(
        self, client: Any, name: str, worker_key: str, set_keys: list[str], wip_keys: list[str], ttl: int
    ) -> None:
        self._script = client.register_script(_TICK)
        self._client = client
        self._name = name
        self._keys = [keys.SWEEPER_LEASE, keys.pulse_key(name), worker_key, *set_keys]
        self._wip = wip_keys
        self.wip_everywhere: list[str] = []
        """The started registries of every queue in Redis, counted instead of this worker's own while
        it holds the lease (its sweep covers them all); set by the holder."""
        self._nsets = len(set_keys)
        self._ttl = ttl
        self.holder = False

    def __call__(
        self, state: str, fields: Mapping[str, object] | None, pulse_ms: int, lease_ms: tuple[int, int]
    ) -> TickReply:
        """One tick: renew the registration with `fields` (None: not this time), pulse for `pulse_ms`
        (0: no chunk running), and keep or try for the sweeper lease (for `lease_ms`: while chunks
        are started, otherwise)."""
        flat: list[object] = []
        if fields is not None:
            values = {**fields, "last_heartbeat": utcformat(datetime.datetime.now(datetime.timezone.utc))}
            flat = [item for name, value in values.items() if value is not None for item in (name, value)]
        args = [
            self._name,
            int(self.holder),
            lease_ms[0],
            lease_ms[1],
            pulse_ms,
            int(fields is not None),
            self._ttl,
            state,
            self._nsets,
            *flat,
        ]
        wip = list(dict.fromkeys([*self._wip, *self.wip_everywhere])) if self.holder else self._wip
        holder, started, workers, added = self._script(keys=[*self._keys, *wip], args=args, client=self._client)
        self.holder = bool(holder)
        return TickReply(self.holder, int(started), int(workers), int(added))


def dead_namesake(
    fields: Mapping[str, str], hostname: str, heartbeat_ttl: float, now: datetime.datetime | None = None
) -> str | None:
    """Why the registration `fields` (an RQ worker hash with our `dw_` fields) belongs to no live
    process and may be replaced by one started under its name; None if it may belong to one.

    With our advertisement: it names its host and pid, so only a process of this host whose pid is
    gone (or this very process, re-registering after an outage) is known dead. Stripped of it (the
    hash expired and a late heartbeat wrote into it): a live worker puts its advertisement back and
    beats at least every half heartbeat TTL, so a heartbeat older than the heartbeat TTL means no live
    worker owns it.
    """
    prefix = keys.WORKER_FIELD_PREFIX
    pid, host = fields.get(f"{prefix}pid"), fields.get(f"{prefix}host")
    if pid is not None:
        if host != hostname or not pid.isdigit():
            return None
        if int(pid) == os.getpid():
            return "it is this process's own, from before a Redis outage"
        return None if process_alive(int(pid)) else f"its process {pid} is dead"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    age = _age(fields.get("last_heartbeat"), now)
    if age is None:
        return "it is stripped of its pid and has no heartbeat"
    if age > heartbeat_ttl:
        return f"it is stripped of its pid and its last heartbeat is {age:.0f} s old"
    return None


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(") ", 1)[1][:1] != "Z"
        except (OSError, IndexError):
            return False
    return True


def _age(stamp: str | None, now: datetime.datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - utcparse(stamp)).total_seconds()
    except ValueError:
        return None
