"""Run a chunk again after its worker process died: a task that has killed its process often enough
fails alone with WorkerDied; the others run in marked waves, so that the next death names its task.

How suspects are narrowed (see common.crash for the record this reads and the marker it writes):
a serial worker runs the tasks one at a time; a worker with thread or async slots runs them in waves
as wide as its slots, except the suspects (tasks that were in a wave when a process died, and tasks
blamed for a death but not yet judged), which run alone. Each wave costs one round trip, which also
publishes the previous wave's results: only a chunk that has killed a process pays it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import redis

from common import keys
from common.crash import RUNNING_FIELD, CrashRecord, running_marker, worker_died_result
from common.events import TASKS_DIED, TASKS_RETRIED, count_event
from common.wire import ChunkPayload, TaskResult, TaskSpec
from worker import running
from worker.execute import PendingRetry, Watchdog, execute_task
from worker.publish import ResultPublisher
from worker.running import IDLE
from worker.runtime import Runtime


def run_careful(job_id: str, chunk: ChunkPayload, state: Runtime, publisher: ResultPublisher, client: Any) -> None:
    """Run a recovered chunk's tasks (see the module docstring); every task gets its result."""
    record = CrashRecord.load(client, job_id)
    limit = state.settings.crash_limit
    judged = [spec for spec in chunk.tasks if record.judged(spec.index, limit)]
    rest = [spec for spec in chunk.tasks if not record.judged(spec.index, limit)]
    for spec in judged:
        publisher.add(worker_died_result(spec, record.blame[spec.index], state.name))
    key = keys.crash_key(job_id)
    host, pid = socket.gethostname(), os.getpid()
    uncounted = True

    def count_once(pipe: Any) -> None:
        nonlocal uncounted
        if uncounted:  # once per careful run, with its first write
            uncounted = False
            if judged:
                count_event(pipe, TASKS_DIED, len(judged))
            if rest:
                count_event(pipe, TASKS_RETRIED, len(rest))

    def mark(wave: list[TaskSpec]) -> Any:
        def write(pipe: Any) -> None:
            count_once(pipe)
            pipe.hset(key, RUNNING_FIELD, running_marker([s.index for s in wave], state.name, host, pid))
            pipe.expire(key, chunk.ttl)

        return write

    def done(pipe: Any) -> None:
        count_once(pipe)
        pipe.delete(key)  # every task has its result: the chunk will not run again

    pool = state.pool()
    width = 1 if pool is None else max(1, state.slots)
    try:
        with Watchdog(state.settings.task_timeout) as watchdog:
            for wave in waves(rest, record.suspects | set(record.blame), width):
                publisher.flush_with(mark(wave))
                if pool is None or (len(wave) == 1 and state.async_slots == 0):
                    for spec in wave:
                        publisher.add(_run_alone(spec, state, watchdog))
                else:
                    pool.run(wave, state.context, publisher)
    except BaseException:
        # Stopped, not killed (a cold shutdown raises SystemExit in the task): the chunk fails through
        # RQ's retry path, and the task that was running must not be blamed by a later recovery.
        with contextlib.suppress(redis.RedisError, OSError):
            client.hdel(key, RUNNING_FIELD)
        raise
    publisher.flush_with(done)


def _run_alone(spec: TaskSpec, state: Runtime, watchdog: Watchdog) -> TaskResult:
    """Every attempt of one task, its retries included (a careful wave holds its task until the end)."""
    slot = running.tasks()  # the main thread: slot 0
    slot[0] = spec.index
    try:
        result = execute_task(spec, state.catalogue, state.settings, state.name, watchdog)
        while type(result) is PendingRetry:
            time.sleep(result.delay)
            attempt = result.attempts + 1
            result = execute_task(spec, state.catalogue, state.settings, state.name, watchdog, attempt, result.delay)
        return result
    finally:
        slot[0] = IDLE


def waves(specs: list[TaskSpec], suspects: set[int], width: int) -> Iterator[list[TaskSpec]]:
    """The tasks in order, in groups of at most `width`; each suspect in a group of its own."""
    group: list[TaskSpec] = []
    for spec in specs:
        if spec.index in suspects or width <= 1:
            if group:
                yield group
                group = []
            yield [spec]
            continue
        group.append(spec)
        if len(group) >= width:
            yield group
            group = []
    if group:
        yield group
