"""Tasks that live workers offer: a name none of them offers becomes its line's failed result."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import redis

from common.errors import TaskNotOffered
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.reader import LiveItem
from dispatcher.status import live_workers

REFRESH_SECONDS = 1.0
"""Least time between two re-reads of the live workers when a name they do not offer shows up."""

SHOWN_NAMES = 60
"""Most task names a message lists."""

NOT_OFFERED = "TaskNotOffered"
"""The error type of the result of a task that no live worker offers."""


class OfferedTasks:
    """The union of the catalogues that live workers of a queue advertise, read on demand.

    Workers advertise their task names in RQ's worker hash, which expires when a worker stops
    heartbeating. A task is refused when live workers serve the queue and none of them offers it;
    with no live worker at all nothing is refused: the tasks wait in their queues for a worker.
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

    def refuses(self, name: str) -> bool:
        """True when live workers serve the queue and none offers `name` (re-read at most once a second)."""
        if name in self.names:
            return False
        if self._read_at is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
            self.refresh()
        return self.workers > 0 and name not in self.names

    def require(self, name: str) -> None:
        """Raise TaskNotOffered if live workers serve the queue and none offers `name`."""
        if self.refuses(name):
            raise TaskNotOffered(self.describe_refusal(name))

    def describe_refusal(self, name: str) -> str:
        """Why `name` is refused: who offers what."""
        return f"task {name!r} is not offered by any live worker on queue {self.settings.queue!r}; {self.describe()}"

    def describe(self) -> str:
        """What the live workers offer, and how to serve another task."""
        offered = sorted(self.names)
        shown = ", ".join(offered[:SHOWN_NAMES])
        if len(offered) > SHOWN_NAMES:
            shown += f", ... ({len(offered)} in all)"
        return (
            f"offered by {self.workers} live worker(s): {shown or '(none)'}. Serve it with `worker --tasks MODULE`, "
            "or enqueue it anyway (to wait for such a worker) with --no-check / check_tasks=False"
        )


@dataclass(frozen=True)
class NotOffered:
    """A task that no live worker offers: it is never enqueued, and this is its result."""

    spec: TaskSpec
    message: str

    def to_result(self) -> TaskResult:
        """The task's failed result, published by the dispatcher."""
        s = self.spec
        return TaskResult(
            s.index, s.task, s.args, s.kwargs, s.id, False, None, NOT_OFFERED, self.message, "dispatcher", 0.0
        )


class OfferedFilter:
    """Passes items through, turning each task that no live worker offers into a NotOffered item.

    Names are checked as they are read, so a lazily read batch is never materialised. A name once
    offered stays accepted; a refused name is looked up again (at most once a second) on each line
    that names it, so a worker that starts meanwhile is taken into account.
    """

    def __init__(self, offered: OfferedTasks) -> None:
        self.offered = offered
        self.refused: dict[str, int] = {}
        """Each refused name, with how many tasks named it."""
        self._accepted: set[str] = set()

    def __call__(self, items: Iterable[LiveItem]) -> Iterator[LiveItem | NotOffered]:
        accepted, offered = self._accepted, self.offered
        for item in items:
            if isinstance(item, TaskSpec) and item.task not in accepted:
                if offered.refuses(item.task):
                    self.refused[item.task] = self.refused.get(item.task, 0) + 1
                    yield NotOffered(item, offered.describe_refusal(item.task))
                    continue
                if item.task in offered.names:
                    accepted.add(item.task)
            yield item

    def describe(self) -> str:
        """The refused names, once each, with what is offered instead ("" if none was refused)."""
        if not self.refused:
            return ""
        names = ", ".join(f"{name!r} ({count} task{'s' if count > 1 else ''})" for name, count in self.refused.items())
        queue = self.offered.settings.queue
        failed = sum(self.refused.values())
        return (
            f"{failed} task(s) failed as {NOT_OFFERED}, never enqueued (no live worker on queue {queue!r} offers "
            f"them): {names}; {self.offered.describe()}"
        )
