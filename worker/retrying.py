"""Failed attempts waiting for their retry: when each is due, without holding a slot meanwhile."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

from common.wire import TaskSpec
from worker.execute import PendingRetry


@dataclass(order=True, slots=True)
class Retry:
    """The next attempt of a task: due at `due` (time.monotonic)."""

    due: float
    sequence: int
    spec: TaskSpec = field(compare=False)
    attempt: int = field(compare=False)
    """The number of the attempt to run (2 for the first retry)."""
    previous_delay: float = field(compare=False)


class Backlog:
    """The chunk's tasks waiting to be tried again, earliest first."""

    def __init__(self) -> None:
        self._heap: list[Retry] = []
        self._sequence = 0

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, failed: PendingRetry) -> None:
        """Schedule the next attempt of the task whose attempt `failed` describes."""
        spec = TaskSpec(failed.index, failed.task, failed.args, failed.kwargs, failed.id)
        self._sequence += 1
        retry = Retry(time.monotonic() + failed.delay, self._sequence, spec, failed.attempts + 1, failed.delay)
        heapq.heappush(self._heap, retry)

    def wait(self) -> float | None:
        """Seconds until the earliest retry is due (0 if one is), None if none waits."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0].due - time.monotonic())

    def take_due(self) -> list[Retry]:
        """The retries due now, removed from the backlog."""
        now = time.monotonic()
        due: list[Retry] = []
        while self._heap and self._heap[0].due <= now:
            due.append(heapq.heappop(self._heap))
        return due

    def take_next(self) -> Retry:
        """The earliest retry, after sleeping until it is due (for a worker with one slot)."""
        remaining = self.wait()
        if remaining:
            time.sleep(remaining)
        return heapq.heappop(self._heap)
