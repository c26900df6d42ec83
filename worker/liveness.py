"""Alive means registered: the heartbeat thread's beat that keeps (and restores) a worker's registration,
and the rule that tells a dead namesake's registration from a live one's."""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from typing import Any

from rq.utils import utcformat, utcparse

from common import keys

# KEYS: the worker hash, then every set it belongs to (RQ's set of workers, and of each queue's workers).
# ARGV: hash TTL, state (written only into a hash that had lost fields), then the registration's
#       field/value pairs: RQ's birth fields (Worker.serialize), our advertisement, last_heartbeat.
# Overwriting fields that never change costs nothing and needs no read first; HSET and SADD count
# what they had to add back, which is how a removal from outside shows up.
_BEAT = """
local added = redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if added > 0 then redis.call('HSETNX', KEYS[1], 'state', ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
for i = 2, #KEYS do added = added + redis.call('SADD', KEYS[i], KEYS[1]) end
return added
"""


class LivenessBeat:
    """One round trip that renews a worker's registration and puts back whatever was removed."""

    def __init__(self, client: Any, worker_key: str, set_keys: list[str], ttl: int) -> None:
        self._script = client.register_script(_BEAT)
        self._client = client
        self._keys = [worker_key, *set_keys]
        self._ttl = ttl

    def __call__(self, state: str, fields: Mapping[str, object]) -> int:
        """Renew the registration with these fields; returns how many fields and memberships were missing."""
        values = {**fields, "last_heartbeat": utcformat(datetime.datetime.now(datetime.timezone.utc))}
        flat = [item for name, value in values.items() if value is not None for item in (name, value)]
        added: int = self._script(keys=self._keys, args=[self._ttl, state, *flat], client=self._client)
        return added


def dead_namesake(
    fields: Mapping[str, str], hostname: str, heartbeat_ttl: float, now: datetime.datetime | None = None
) -> str | None:
    """Why the registration `fields` (an RQ worker hash with our `dw_` fields) belongs to no live
    process and may be replaced by one started under its name; None if it may belong to one.

    With our advertisement: it names its host and pid, so only a process of this host whose pid is
    gone (or this very process, re-registering after an outage) is known dead. Stripped of it (the
    hash expired and a late heartbeat wrote into it): a live worker puts its advertisement back and
    beats within one heartbeat interval, so a heartbeat older than the heartbeat TTL means no live
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
