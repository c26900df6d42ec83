"""Hand chunks back to their queue through RQ's own cleanup, for the sweeper (worker.sweeper) and
for a supervisor whose worker process died (worker.cli)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from rq.registry import StartedJobRegistry

from common import keys
from common.jobs import ABANDONMENT_HANDLERS

HANDBACK_CLAIM_MS = 30_000
"""How long one process's claim on handing back a chunk keeps others from doing it again."""

# KEYS: the started registry, the entry's hand-back claim. ARGV: the entry, the claim's lifetime (ms).
# Marks the entry expired (score 1) if it is still there and nobody claimed it: RQ's cleanup with
# a timestamp of 2 then hands back exactly the entries marked so.
_CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if not redis.call('SET', KEYS[2], 1, 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', 1, ARGV[1])
return 1
"""
# KEYS: a gone worker's hash, RQ's set of workers, then RQ 3's set of its executions (none on RQ 2).
# ARGV: its `birth` as the sweeper read it. Unregisters it (as RQ's maintenance would once its hash
# expired), unless a process registered under the same name since (another birth). Its executions
# go too: a replacement under its name (a supervisor's) would otherwise inherit them and be shown
# running a chunk it never took.
_UNREGISTER = """
if redis.call('HGET', KEYS[1], 'birth') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
if KEYS[3] then redis.call('DEL', KEYS[3]) end
return 1
"""
_MARKED = 2
"""Score below which an entry was marked for hand-back (real scores are epoch seconds)."""


def unregister(client: redis.Redis, births: dict[str, bytes | None]) -> None:
    """Drop the registrations of workers known to be gone, unless a process registered under the
    same name since (another `birth` than the one read)."""
    script = client.register_script(_UNREGISTER)
    for worker, birth in births.items():
        if birth is not None:
            executions = keys.rq_worker_executions_key(worker)
            worker_keys = [keys.RQ_WORKER_PREFIX + worker, keys.RQ_WORKERS] + ([executions] if executions else [])
            script(keys=worker_keys, args=[birth])


def hand_back(
    client: redis.Redis,
    queue: str,
    entries: Iterable[str],
    job_class: Any,
    serializer: Any,
    exception_handlers: list[Any] | None = None,
) -> int:
    """Hand the given started entries of `queue` back through RQ's cleanup (re-queued under their
    Retry, or failed); returns how many this process claimed (another may have claimed the rest)."""
    registry = StartedJobRegistry(queue, connection=client, job_class=job_class, serializer=serializer)
    claim = client.register_script(_CLAIM)
    claimed = sum(int(claim(keys=[registry.key, keys.handback_key(e)], args=[e, HANDBACK_CLAIM_MS])) for e in entries)
    if claimed:
        registry.cleanup(timestamp=_MARKED, exception_handlers=ABANDONMENT_HANDLERS + (exception_handlers or []))
    return claimed


def entries_of(client: redis.Redis, worker: str, queues: Iterable[str]) -> dict[str, list[str]]:
    """The started entries of `worker` in the given queues' registries, by queue."""
    queues = list(queues)
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrange(keys.rq_started_key(queue), 0, -1)
    found: dict[str, list[str]] = {}
    listed = pipe.execute()
    pipe = client.pipeline(transaction=False)
    pairs = [(q, e.decode()) for q, entries in zip(queues, listed, strict=True) for e in entries]
    for _queue, entry in pairs:
        pipe.hget(keys.rq_execution_key_of_entry(entry), "worker_name")
    for (queue, entry), owner in zip(pairs, pipe.execute(), strict=True):
        if owner is not None and owner.decode() == worker:
            found.setdefault(queue, []).append(entry)
    return found


def hand_back_worker(client: redis.Redis, worker: str, job_class: Any, serializer: Any) -> int:
    """Hand back every chunk `worker` had started, in any queue, and unregister it: for a process
    known to be dead (the supervisor saw it exit), so no rule needs to be met. Returns how many
    chunks were handed back."""
    queues = sorted(m.decode().removeprefix(keys.RQ_QUEUE_PREFIX) for m in client.smembers(keys.RQ_QUEUES))  # type: ignore[union-attr]
    found = entries_of(client, worker, queues)
    handed = sum(hand_back(client, queue, entries, job_class, serializer) for queue, entries in found.items())
    birth: bytes | None = client.hget(keys.RQ_WORKER_PREFIX + worker, "birth")  # type: ignore[assignment]
    unregister(client, {worker: birth})  # it is dead: now rather than when its record expires
    return handed
