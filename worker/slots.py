"""A worker process's task slots: coroutine tasks on one event loop (async slots), the others on threads."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from common.catalogue import Catalogue, TaskDefinition
from common.errors import UnknownTask
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from worker import running
from worker.aio import AwaitedWork, Deadlines, execute_coroutine_task
from worker.eventloop import new_event_loop
from worker.execute import PendingRetry, Watchdog, execute_task
from worker.publish import ResultPublisher
from worker.retrying import Backlog, Retry
from worker.running import IDLE
from worker.serial import run_backlog

CLEANUP_SECONDS = 1.0
"""How long a chunk that stops early (Redis lost, cold shutdown) lets its cancelled coroutines end."""


@dataclass(frozen=True, slots=True)
class SlotContext:
    """What the slots need of the worker process (worker.runtime.Runtime.context gives it)."""

    catalogue: Catalogue
    settings: Settings
    name: str
    """The worker's name, written into each result."""


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

    def run(self, tasks: list[TaskSpec], runtime: SlotContext, publisher: ResultPublisher) -> None:
        """Run every task of a chunk, publishing each result; returns once all are published.

        A failed attempt that its task retries leaves its slot while it backs off: the retry is
        submitted again once due (threads), or sleeps on the event loop outside the slots (async).
        """
        awaited, blocking = _split(tasks, runtime.catalogue) if self.async_slots > 0 else ([], tasks)
        running.tasks(max(1, self.threads) + self.async_slots)  # as many slots as this (worker.running)
        futures = self._submit(blocking, runtime)
        backlog = Backlog()
        if self.pool is None and blocking:
            slot = running.tasks()  # the main thread: slot 0
            with Watchdog(runtime.settings.task_timeout) as watchdog:
                for spec in blocking:
                    slot[0] = spec.index
                    result = execute_task(spec, runtime.catalogue, runtime.settings, runtime.name, watchdog)
                    slot[0] = IDLE
                    if type(result) is PendingRetry:
                        backlog.add(result)
                    else:
                        publisher.add(result)
        if awaited:
            self._run_awaited(awaited, runtime, publisher)
        if backlog:  # the main thread's retries, after the coroutines they would otherwise hold up
            with Watchdog(runtime.settings.task_timeout) as watchdog:
                catalogue, settings = runtime.catalogue, runtime.settings
                run_backlog(backlog, catalogue, settings, runtime.name, watchdog, publisher)
        if runtime.catalogue.retrying:
            self._collect_retrying(futures, runtime, publisher)
            return
        for future in as_completed(futures):
            publisher.add(future.result())

    def _collect_retrying(
        self, futures: list[Future[TaskResult]], runtime: SlotContext, publisher: ResultPublisher
    ) -> None:
        """Publish the pool's results as they come, and submit each retry again once it is due."""
        if not futures:
            return
        done: queue.SimpleQueue[Future[TaskResult]] = queue.SimpleQueue()
        for future in futures:
            future.add_done_callback(done.put)
        outstanding = len(futures)
        backlog = Backlog()
        while outstanding or backlog:
            for retry in backlog.take_due():
                future = self._resubmit(retry, runtime)
                future.add_done_callback(done.put)
                outstanding += 1
            if not outstanding:
                time.sleep(backlog.wait() or 0.0)
                continue
            try:
                result = done.get(timeout=backlog.wait()).result()
            except queue.Empty:
                continue
            outstanding -= 1
            if type(result) is PendingRetry:
                backlog.add(result)
            else:
                publisher.add(result)

    def _resubmit(self, retry: Retry, runtime: SlotContext) -> Future[TaskResult]:
        assert self.pool is not None
        settings, catalogue, name = runtime.settings, runtime.catalogue, runtime.name
        return self.pool.submit(
            _execute_in_slot, retry.spec, catalogue, settings, name, retry.attempt, retry.previous_delay
        )

    def _submit(self, specs: list[TaskSpec], runtime: SlotContext) -> list[Future[TaskResult]]:
        """Start `specs` on the pool. Their results are published from the main thread: publishing
        from each pool thread instead (no as_completed) was slower at many threads, as the threads
        queued on the publisher's lock (docs/performance.md)."""
        if self.pool is None or not specs:
            return []
        return [
            self.pool.submit(_execute_in_slot, spec, runtime.catalogue, runtime.settings, runtime.name)
            for spec in specs
        ]

    def _run_awaited(
        self, pairs: list[tuple[TaskSpec, TaskDefinition]], runtime: SlotContext, publisher: ResultPublisher
    ) -> None:
        loop = self.loop()
        settings, name = runtime.settings, runtime.name
        work = AwaitedWork(pairs)
        board = running.tasks()
        first = max(1, self.threads)  # see worker.running for the slot numbers

        async def slot(deadlines: Deadlines, number: int) -> None:
            while True:  # the slots share the work: whoever is free takes the next task
                item = work.take()
                if item is None:
                    item = await work.take_later()
                    if item is None:
                        return
                spec, definition, attempt, previous = item
                board[number] = spec.index
                try:
                    result = await execute_coroutine_task(
                        spec, definition, settings, name, deadlines, attempt, previous
                    )
                finally:
                    board[number] = IDLE
                if type(result) is PendingRetry:
                    work.retry_later(result, definition)  # backs off outside the slots
                else:
                    publisher.add(result)

        with Deadlines(loop, settings.task_timeout) as deadlines:
            count = min(self.async_slots, len(pairs))
            slots = [loop.create_task(slot(deadlines, first + k)) for k in range(count)]
            try:
                loop.run_until_complete(asyncio.gather(*slots))
            except BaseException:
                # The chunk fails (RQ runs it again): its coroutines must not run on into the next chunk.
                work.cancel()
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


_thread_slot = threading.local()


def _number_thread(numbers: Iterator[int]) -> None:
    """A pool thread's initializer: its slot number (worker.running)."""
    _thread_slot.number = next(numbers)


def _execute_in_slot(
    spec: TaskSpec, catalogue: Catalogue, settings: Settings, worker: str, attempt: int = 1, previous: float = 0.0
) -> TaskResult:
    """execute_task on a pool thread, the task's index in the thread's slot while it runs."""
    board, number = running.tasks(), _thread_slot.number
    board[number] = spec.index
    try:
        return execute_task(spec, catalogue, settings, worker, None, attempt, previous)
    finally:
        board[number] = IDLE


def _started_pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool whose threads all exist already: ThreadPoolExecutor starts them one per submit,
    which made a worker's first chunk of slow tasks start its slots one by one."""
    pool = ThreadPoolExecutor(
        threads, thread_name_prefix="task", initializer=_number_thread, initargs=(itertools.count(),)
    )
    barrier = threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(barrier.wait)
    barrier.wait()
    return pool
