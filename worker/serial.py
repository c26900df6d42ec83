"""The worker's hot loop: run a chunk's tasks one after another and turn each into its wire row.

It does what `execute_task` does, for the common case (a known task called with positional
arguments of the exact types its signature takes, and no retries or time limit of its own) without
building a TaskSpec and a TaskResult per task; every other case goes through `execute_task` itself,
so both paths give the same results.

A failed attempt that its task's policy retries waits in a backlog: the rest of the chunk runs
first, then each retry runs once it is due (sleeping only what is left of its delay), so a task
backing off holds up its chunk-mates no longer than its delay would anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from common.catalogue import Catalogue
from common.settings import Settings
from common.wire import ResultRow, TaskRow, TaskSpec, result_row
from worker import running
from worker.execute import PendingRetry, Watchdog, check_result_size, execute_task, format_task_traceback
from worker.publish import FLUSH_EVERY_RESULTS, FLUSH_EVERY_SECONDS, ResultPublisher
from worker.retrying import Backlog
from worker.running import IDLE

SMALL_INT_BITS = 64
"""Integers up to this size need no size check before they travel."""


def run_serial(
    rows: list[TaskRow],
    catalogue: Catalogue,
    settings: Settings,
    worker: str,
    watchdog: Watchdog,
    publisher: ResultPublisher,
) -> None:
    """Run every task row in order; each result goes to `publisher` (flushed by count and by age)."""
    known: dict[str, FastEntry | None] = {}
    limit = settings.max_result_bytes
    out: list[ResultRow] = []
    tracebacks: dict[int, str] = {}
    backlog = Backlog()
    failed = 0
    clock = time.perf_counter
    slot = running.tasks()  # slot 0: the task running now, for the supervisor if this process dies
    last_flush = before = clock()
    for row in rows:
        index, task_id, name, args, kwargs = row
        entry = known.get(name)
        if entry is None and name not in known:
            entry = known[name] = _fast_entry(catalogue, name)
        func = None
        if entry is not None and not kwargs and entry[1] <= len(args) <= entry[2]:
            func = entry[0]
            for value, allowed in zip(args, entry[3], strict=False):  # inlined: a call per task shows in W1
                if type(value) not in allowed:
                    func = None
                    break
        if func is None:
            slot[0] = index
            result = execute_task(TaskSpec(index, name, args, kwargs, task_id), catalogue, settings, worker, watchdog)
            slot[0] = IDLE
            if type(result) is PendingRetry:
                backlog.add(result)
            else:
                out.append(result_row(result))
                if not result.ok:
                    failed += 1
                    if result.traceback:
                        tracebacks[index] = result.traceback
            before = clock()
        else:
            watchdog.task_started = before
            slot[0] = index
            error: BaseException | None = None
            try:
                value = func(*args)
            except Exception as exc:
                error = exc
                tracebacks[index] = format_task_traceback(exc)
            finally:
                watchdog.task_started = None
                slot[0] = IDLE
            if error is None and (type(value) is not int or value.bit_length() > SMALL_INT_BITS):
                try:
                    check_result_size(value, limit)
                except Exception as exc:
                    error = exc
            after = clock()
            if error is None:
                out.append([index, task_id, name, args, kwargs, 1, value, round((after - before) * 1000, 3)])
            else:
                failed += 1
                reason = [type(error).__name__, str(error) or type(error).__name__]
                out.append([index, task_id, name, args, kwargs, 0, reason, round((after - before) * 1000, 3)])
            before = after
        if len(out) >= FLUSH_EVERY_RESULTS or before - last_flush >= FLUSH_EVERY_SECONDS:
            publisher.add_rows(out, failed, tracebacks)
            out, tracebacks, failed = [], {}, 0
            last_flush = before
    publisher.add_rows(out, failed, tracebacks)
    if backlog:
        run_backlog(backlog, catalogue, settings, worker, watchdog, publisher)


def run_backlog(
    backlog: Backlog,
    catalogue: Catalogue,
    settings: Settings,
    worker: str,
    watchdog: Watchdog,
    publisher: ResultPublisher,
) -> None:
    """Run each retry when it is due, in turn, until none is left; publish each final result."""
    slot = running.tasks()  # run on the main thread: slot 0
    while backlog:
        retry = backlog.take_next()
        slot[0] = retry.spec.index
        result = execute_task(retry.spec, catalogue, settings, worker, watchdog, retry.attempt, retry.previous_delay)
        slot[0] = IDLE
        if type(result) is PendingRetry:
            backlog.add(result)
            continue
        tracebacks = {result.index: result.traceback} if result.traceback and not result.ok else {}
        publisher.add_rows([result_row(result)], 0 if result.ok else 1, tracebacks, {result.index: result.attempts})


FastEntry = tuple[Callable[..., Any], int, int, tuple[frozenset[type], ...]]
"""A task whose arguments can be checked by type alone: (function, least and most arguments, types)."""


def _fast_entry(catalogue: Catalogue, name: str) -> FastEntry | None:
    """How to check and call the task by type alone; None sends it the long way (execute_task)."""
    if name not in catalogue:
        return None
    definition = catalogue.get(name)
    fast = definition.fast_types
    if not definition.plain:  # its retries and time limit are execute_task's
        return None
    return None if fast is None else (definition.func, definition.min_args, len(fast), fast)
