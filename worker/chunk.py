"""The one job function workers run: execute a chunk of catalogue tasks and publish the results."""

from __future__ import annotations

import sys

from rq import get_current_job

from common.cancel import cancelled_result
from common.crash import CRASHED_META
from common.durability import ReplicaWait
from common.wire import TaskSpec, decode_chunk
from worker import running, runtime
from worker.cancel import batch_cancelled
from worker.careful import run_careful
from worker.execute import Watchdog
from worker.publish import ResultPublisher
from worker.serial import run_serial


def run_chunk(payload: object) -> int:
    """Run every task of a chunk and publish each result; returns how many tasks ran.

    A task's failure is that task's error result. Only a broken payload or a lost Redis connection
    fails the job itself, and RQ's retry policy then runs the chunk again. A chunk recovered after
    its worker process died runs carefully (worker.careful), so that a task that kills its process
    fails alone.
    """
    chunk = decode_chunk(payload)
    state = runtime.current()
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_chunk must run inside an RQ worker")
    wait = ReplicaWait.from_settings(state.settings)  # the durable option (common.durability)
    publisher = ResultPublisher.for_job(job, chunk.batch_id, chunk.chunk, chunk.ttl, state.name, wait)
    if batch_cancelled(job, chunk.batch_id):
        for spec in chunk.tasks:
            publisher.add(cancelled_result(spec, state.name))
        publisher.finish()
        return 0
    pool = state.pool()
    running.begin(job.id, max(1, state.threads) + state.async_slots)  # see worker.running
    if state.log_tasks:
        for spec in chunk.tasks:
            _log_task(state.name, spec)
    try:
        if isinstance(job.meta, dict) and job.meta.get(CRASHED_META):
            run_careful(job.id, chunk, state, publisher, job.connection)
        elif pool is None:
            with Watchdog(state.settings.task_timeout) as watchdog:
                run_serial(chunk.rows, state.catalogue, state.settings, state.name, watchdog, publisher)
        else:
            pool.run(chunk.tasks, state.context, publisher)
    except BaseException:
        # Stopped, not killed (RQ fails the chunk and runs it again): no task of it is to blame should
        # this process die before its next chunk (worker.careful clears its marker for the same reason).
        running.idle()
        raise
    publisher.finish()
    return len(chunk.rows)


def _log_task(worker: str, spec: TaskSpec) -> None:
    label = spec.id if spec.id is not None else str(spec.index + 1)
    if len(spec.args) == 2 and not spec.kwargs:
        shown = f"{spec.args[0]} {spec.task} {spec.args[1]}"
    else:
        shown = " ".join([spec.task, *(str(a) for a in spec.args)])
    sys.stdout.write(f"[{worker}] Processing task {label}: {shown}\n")
    sys.stdout.flush()
