"""Let a waiting dispatcher ride out a Redis outage (a restart, a failover) for a bounded time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from common.connection import redact_url
from common.errors import RedisUnavailable
from common.settings import Settings

log = logging.getLogger("dispatcher")

T = TypeVar("T")

OUTAGE_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
"""Errors that mean Redis is unreachable or still loading its data (BusyLoadingError is a ConnectionError)."""

BACKOFF_MAX = 5.0
"""Longest pause between two attempts."""


class OutageGuard:
    """Runs a dispatcher's reads again, with back-off, while Redis is unreachable.

    Reads are safe to repeat: the watcher de-duplicates by task index and resumes the stream from
    the last entry it saw. After `settings.outage_grace` seconds without Redis it gives up with a
    RedisUnavailable (exit 3) that says how to fetch the results later.
    """

    def __init__(self, settings: Settings, batch_id: str) -> None:
        self.settings = settings
        self.batch_id = batch_id
        self.outages = 0

    def __call__(self, read: Callable[[], T]) -> T:
        """`read()`, retried through an outage of up to `outage_grace` seconds."""
        since: float | None = None
        delay = 0.25
        while True:
            try:
                value = read()
            except OUTAGE_ERRORS as exc:
                now = time.monotonic()
                if since is None:
                    since = now
                    self.outages += 1
                    log.warning(
                        "dispatcher: Redis at %s unreachable (%s); retrying for up to %g s",
                        redact_url(self.settings.redis_url),
                        exc,
                        self.settings.outage_grace,
                    )
                if now - since >= self.settings.outage_grace:
                    raise RedisUnavailable(
                        f"Redis at {redact_url(self.settings.redis_url)} unreachable for "
                        f"{self.settings.outage_grace:g} s while waiting for batch {self.batch_id} ({exc}); "
                        f"the batch goes on: `dispatcher results {self.batch_id}` fetches its results, "
                        f"`dispatcher cancel {self.batch_id}` cancels it"
                    ) from None
                time.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if since is not None:
                log.warning("dispatcher: Redis is back after %.1f s", time.monotonic() - since)
            return value
