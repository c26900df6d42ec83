"""Refuse, before anything is enqueued, a task that no live worker offers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import redis

from common.errors import TaskNotOffered
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.status import live_workers

T = TypeVar("T")

REFRESH_SECONDS = 1.0
"""Least time between two re-reads of the live workers when an unknown name shows up."""

SHOWN_NAMES = 60
"""Most task names an error message lists."""


class OfferedTasks:
    """The union of the catalogues that live workers of a queue advertise, read on demand.

    Workers advertise their task names in RQ's worker hash, which expires when a worker stops
    heartbeating; a name none of them offers would sit in the queue or fail as UnknownTask later.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.names: set[str] = set()
        self.workers = 0
        self.slots = 0
        self._read_at: float | None = None

    def refresh(self) -> None:
        """Re-read the live workers and what they offer."""
        workers = live_workers(self.client, self.settings)
        self.names = {name for w in workers for name in w["tasks"] if isinstance(name, str)}
        self.workers = len(workers)
        self.slots = sum(w["slots"] for w in workers)
        self._read_at = time.monotonic()

    def require(self, name: str) -> None:
        """Raise TaskNotOffered unless a live worker offers `name` (re-reading the workers once if not)."""
        if name in self.names:
            return
        if self._read_at is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
            self.refresh()
            if name in self.names:
                return
        raise TaskNotOffered(self.describe_refusal(name))

    def describe_refusal(self, name: str) -> str:
        """The error message for a task no live worker offers."""
        queue = self.settings.queue
        if not self.workers:
            return (f"task {name!r} refused: no live worker serves queue {queue!r} (start one, or skip this "
                    f"check with --no-check / check_tasks=False)")  # fmt: skip
        offered = sorted(self.names)
        shown = ", ".join(offered[:SHOWN_NAMES])
        if len(offered) > SHOWN_NAMES:
            shown += f", ... ({len(offered)} in all)"
        return (f"task {name!r} refused: no live worker on queue {queue!r} offers it. Offered by "
                f"{self.workers} live worker(s): {shown or '(none)'}. Serve it with `worker --tasks MODULE`, "
                f"or skip this check with --no-check / check_tasks=False")  # fmt: skip


def check_offered(items: Iterable[T], offered: OfferedTasks) -> Iterator[T]:
    """Pass items through, raising TaskNotOffered at the first task whose name no live worker offers.

    Names are checked as they are read, so a lazily read batch is never materialised: an item is
    checked before the chunk that holds it can be enqueued.
    """
    known: set[str] = set()
    for item in items:
        if isinstance(item, TaskSpec) and item.task not in known:
            offered.require(item.task)
            known.add(item.task)
        yield item
