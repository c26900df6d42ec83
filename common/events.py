"""Counts of reliability events (tasks retried, worker processes lost) per minute, for `dispatcher status`."""

from __future__ import annotations

import time
from typing import Any

from common import keys

TASKS_RETRIED = "tasks_retried"
"""Tasks run again: the tasks of a chunk re-run after its worker died, or a task's own retries."""
WORKERS_LOST = "workers_lost"
"""Worker processes that died (or lost Redis) while running a chunk, as seen when the chunk was recovered."""
TASKS_DIED = "tasks_died"
"""Tasks failed with WorkerDied: they were running when their process died, crash-limit times."""

KINDS = (TASKS_RETRIED, WORKERS_LOST, TASKS_DIED)
"""Every kind of event counted; `recent_events` reports each, zero or not."""

WINDOW_SECONDS = 3600
"""The span `recent_events` sums by default: the last hour."""


def count_event(pipe: Any, kind: str, amount: int = 1, now: float | None = None) -> None:
    """Queue the commands that count `amount` events of `kind` in the current minute's bucket on a
    pipeline (or client): two commands, no read, so any write path can carry them."""
    minute = int((time.time() if now is None else now) // 60)
    key = keys.events_key(minute)
    pipe.hincrby(key, kind, amount)
    pipe.expire(key, keys.EVENTS_TTL)


def recent_events(client: Any, window: int = WINDOW_SECONDS, now: float | None = None) -> dict[str, int]:
    """Events of each kind in the last `window` seconds (whole minutes), read in one round trip."""
    minute = int((time.time() if now is None else now) // 60)
    minutes = range(minute - window // 60 + 1, minute + 1)
    pipe = client.pipeline(transaction=False)
    for bucket in minutes:
        pipe.hgetall(keys.events_key(bucket))
    totals = dict.fromkeys(KINDS, 0)
    for counts in pipe.execute():
        for raw_kind, raw_count in counts.items():
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
            totals[kind] = totals.get(kind, 0) + int(raw_count)
    return totals
