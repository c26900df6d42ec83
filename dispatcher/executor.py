"""`RedisExecutor`: a concurrent.futures.Executor whose tasks run on workers anywhere, through Redis.

Design: an executor is one batch, opened on its first task and finished by `shutdown()`. Every
`submit()` and `map()` appends tasks to it, so one background reader (one XREAD BLOCK on the batch's
result stream, through BatchWatcher) resolves every future of the executor. Tasks travel as the
CLI's do (BatchSubmitter: RQ chunk jobs, one enqueue script call per flush), so the batch shows in
`dispatcher status` and `dispatcher results ID` reads it; until shutdown its state is 'open' and it
has no total. This module is the Executor interface; dispatcher.executorbatch holds the batch and its
sender and reader threads.
"""

from __future__ import annotations

import atexit
import contextlib
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from common.catalogue import TASK_NAME_PATTERN, default_catalogue
from common.connection import check_connection, connect
from common.errors import ConfigurationError
from common.settings import Settings
from dispatcher.callspec import task_spec
from dispatcher.chunking import auto_chunk_size, peek_total
from dispatcher.executorbatch import BrokenRedisExecutor, ExecutorBatch
from dispatcher.mapstream import MapStream
from dispatcher.offered import OfferedTasks
from dispatcher.status import live_capacity
from dispatcher.submit import new_batch_id

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "BrokenRedisExecutor", "RedisExecutor"]

DEFAULT_MAX_IN_FLIGHT = 20_000
"""Tasks one `map()` call keeps submitted but not yet consumed; the rest of its input is not read."""


_live: weakref.WeakSet[RedisExecutor] = weakref.WeakSet()
"""Executors not shut down yet: at exit their batches are finished, so `dispatcher results` can end."""


@atexit.register
def _finish_live_batches() -> None:
    for executor in list(_live):
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False)


class RedisExecutor(Executor):
    """A concurrent.futures.Executor that runs registered tasks on `worker` processes via Redis.

    `task` arguments are a task name (`"add"`, `"images.resize"`) or the `@task`-decorated function
    itself. Arguments and results travel as JSON (tuples arrive as lists). A task's exception is
    raised from `Future.result()` as RemoteTaskError (remote type, message and traceback text).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        queue: str | None = None,
        chunksize: int | None = None,
        timeout: float | None = None,
        *,
        check_tasks: bool = True,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        result_ttl: int | None = None,
    ) -> None:
        """Connect (URL from REDIS_URL when None) and check Redis answers; nothing is written yet.

        chunksize: tasks per RQ job (map's default; submits that arrive together are grouped up to
        it; default: automatic for map, 1 for submit). timeout: default seconds `map()` waits for
        its results. check_tasks: refuse (TaskNotOffered) a task that live workers serve the queue but
        none offers, before enqueueing it; with no live worker, tasks are enqueued and wait for one.
        """
        if chunksize is not None and chunksize < 1:
            raise ConfigurationError("chunksize must be at least 1")
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1")
        self.settings = Settings.from_env(redis_url=redis_url, queue=queue, result_ttl=result_ttl)
        self.client = connect(self.settings)
        check_connection(self.client, self.settings)
        self.chunksize = chunksize
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.batch_id = new_batch_id()
        self.offered = OfferedTasks(self.client, self.settings) if check_tasks else None
        self._names: dict[Callable[..., Any], str] = {}
        self._batch = ExecutorBatch(self.client, self.settings, self.batch_id, chunksize)
        _live.add(self)

    # -- the Executor interface -------------------------------------------------------------

    def submit(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue one task and return its Future; sent by a background sender, with any others pending."""
        name = self.task_name(fn)
        self._require(name)
        spec = task_spec(name, args, kwargs, self.settings.max_arg_bytes)
        future: Future[Any] = Future()
        self._batch.add_task(spec, future)
        return future

    def map(
        self,
        fn: Callable[..., Any] | str,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """Like Executor.map, but streaming: at most `max_in_flight` tasks are submitted and unconsumed.

        The first window is submitted now; the rest as results are consumed. Results come in input
        order; the first failed task raises its RemoteTaskError, and the tasks after it are cancelled.
        """
        name = self.task_name(fn)
        self._require(name)
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        arguments: Iterator[tuple[Any, ...]] = zip(*iterables)  # noqa: B905 (stops at the shortest, like Executor.map)
        size = chunksize or self.chunksize
        if size is None:
            total, arguments = peek_total(arguments, self.max_in_flight)  # type: ignore[assignment]
            size = self._auto_chunksize(total)
        window = max(self.max_in_flight, size)
        stream = MapStream(self._batch, name, arguments, size, window, self.settings.max_arg_bytes)
        stream.fill()
        return stream.results(deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more tasks, finish the batch (its total becomes known), optionally wait or cancel.

        cancel_futures: cancel every pending future and take its chunk off the queue if no worker
        has started it (its tasks then get a Cancelled result); chunks already running still run.
        """
        _live.discard(self)
        self._batch.close(wait, cancel_futures)

    # -- helpers used by the interface ------------------------------------------------------

    def task_name(self, task: Callable[..., Any] | str) -> str:
        """The catalogue name of a task given by name or by its @task-decorated function."""
        if isinstance(task, str):
            if not TASK_NAME_PATTERN.match(task):
                raise ValueError(f"invalid task name {task[:60]!r}")
            return task
        name = self._names.get(task)
        if name is None:
            # An `async def` task is known by its coroutine function (what @task returned to the user).
            self._names = {
                func: d.name for d in default_catalogue for func in (d.func, d.coroutine) if func is not None
            }
            name = self._names.get(task)
        if name is None:
            raise TypeError(
                f"{task!r} is not a registered task: decorate it with @task (from common import task) "
                "and serve its module with `worker --tasks MODULE`, or pass a task name"
            )
        return name

    def _require(self, name: str) -> None:
        if self.offered is not None:
            self.offered.require(name)

    def _auto_chunksize(self, total: int | None) -> int:
        if self.offered is not None and self.offered.workers:
            processes, slots = self.offered.workers, self.offered.slots
        else:
            processes, slots = live_capacity(self.client, self.settings)
        size = auto_chunk_size(total, processes, slots)
        return max(1, min(size, self.max_in_flight // 4))
