"""A worker process's task slots: coroutine tasks on one event loop (async slots), the others on threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from common.catalogue import Catalogue, TaskDefinition
from common.errors import UnknownTask
from common.wire import TaskResult, TaskSpec
from worker.aio import Deadlines, execute_coroutine_task, new_event_loop
from worker.execute import Watchdog, execute_task
from worker.publish import ResultPublisher

if TYPE_CHECKING:
    from worker.runtime import Runtime

CLEANUP_SECONDS = 1.0
"""How long a chunk that stops early (Redis lost, cold shutdown) lets its cancelled coroutines end."""


class Slots:
    """Runs a chunk's tasks side by side: `threads` threads and/or `async_slots` coroutines at once.

    A task with an `async def` form (TaskDefinition.coroutine) runs on this process's event loop
    when async slots are on: a hundred concurrent sleeps then cost one thread instead of a hundred,
    and no longer fight over the GIL when they wake together. Every other task runs on the thread
    pool, or on the main thread (under the per-task watchdog) when there is no pool.
    """

    def __init__(self, threads: int, async_slots: int) -> None:
        self.threads = threads
        self.async_slots = async_slots
        self.pool = _started_pool(threads) if threads > 1 else None
        self._loop: asyncio.AbstractEventLoop | None = None
        if async_slots > 0:  # made now, like the threads, rather than during the first chunk
            self.loop().run_until_complete(asyncio.sleep(0))

    def run(self, tasks: list[TaskSpec], runtime: Runtime, publisher: ResultPublisher) -> None:
        """Run every task of a chunk, publishing each result; returns once all are published."""
        awaited, blocking = _split(tasks, runtime.catalogue) if self.async_slots > 0 else ([], tasks)
        futures = self._submit(blocking, runtime)
        if self.pool is None and blocking:
            with Watchdog(runtime.settings.task_timeout) as watchdog:
                for spec in blocking:
                    publisher.add(execute_task(spec, runtime.catalogue, runtime.settings, runtime.name, watchdog))
        if awaited:
            self._run_awaited(awaited, runtime, publisher)
        for future in as_completed(futures):
            publisher.add(future.result())

    def _submit(self, specs: list[TaskSpec], runtime: Runtime) -> list[Future[TaskResult]]:
        """Start `specs` on the pool. Their results are published from the main thread: publishing
        from each pool thread instead (no as_completed) was slower at 100 threads, 0.95 against 0.97
        efficiency and 66 against 49 us of CPU per task, as the threads queued on the publisher's lock."""
        if self.pool is None or not specs:
            return []
        return [
            self.pool.submit(execute_task, spec, runtime.catalogue, runtime.settings, runtime.name) for spec in specs
        ]

    def _run_awaited(
        self, pairs: list[tuple[TaskSpec, TaskDefinition]], runtime: Runtime, publisher: ResultPublisher
    ) -> None:
        loop = self.loop()
        queue = iter(pairs)
        settings, name = runtime.settings, runtime.name

        async def slot(deadlines: Deadlines) -> None:
            for spec, definition in queue:  # the slots share one iterator: whoever is free takes the next
                publisher.add(await execute_coroutine_task(spec, definition, settings, name, deadlines))

        with Deadlines(loop, settings.task_timeout) as deadlines:
            slots = [loop.create_task(slot(deadlines)) for _ in range(min(self.async_slots, len(pairs)))]
            try:
                loop.run_until_complete(asyncio.gather(*slots))
            except BaseException:
                # The chunk fails (RQ runs it again): its coroutines must not run on into the next chunk.
                for task in slots:
                    task.cancel()
                loop.run_until_complete(asyncio.wait(slots, timeout=CLEANUP_SECONDS))
                raise

    def close(self) -> None:
        """Stop the threads and close the event loop (a worker process just exits instead)."""
        if self.pool is not None:
            self.pool.shutdown()
        if self._loop is not None:
            self._loop.close()

    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's event loop for async slots (made on first use, in the thread that runs chunks)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = new_event_loop()
        return self._loop


def _split(tasks: list[TaskSpec], catalogue: Catalogue) -> tuple[list[tuple[TaskSpec, TaskDefinition]], list[TaskSpec]]:
    """(tasks with an async form, with their definitions; every other task, unknown ones included)."""
    awaited: list[tuple[TaskSpec, TaskDefinition]] = []
    blocking: list[TaskSpec] = []
    for spec in tasks:
        try:
            definition = catalogue.get(spec.task)
        except UnknownTask:
            blocking.append(spec)
            continue
        if definition.coroutine is None:
            blocking.append(spec)
        else:
            awaited.append((spec, definition))
    return awaited, blocking


def _started_pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool whose threads all exist already: ThreadPoolExecutor starts them one per submit,
    which made a worker's first chunk of slow tasks start its slots one by one (~0.1 ms each)."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="task")
    barrier = threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(barrier.wait)
    barrier.wait()
    return pool
