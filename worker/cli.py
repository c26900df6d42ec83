"""The `worker` command: serve chunks from Redis queues with N processes on this host."""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings

import click

from common import Settings, default_catalogue
from common.connection import connect
from common.errors import EXIT_INTERRUPTED, DispatchError
from common.gctuning import tune_long_running_process
from common.jobdata import ChunkJobSerializer
from worker import runtime as runtime_module
from worker.deathnote import DeathNotes
from worker.handback import hand_back_worker
from worker.health import run_check
from worker.job import SafeJob
from worker.lifecycle import announce_start, await_redis, work_and_report
from worker.runner import defer_stop_signals, worker_class
from worker.runtime import Runtime, import_task_modules
from worker.supervisor import Supervisor


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--redis-url", envvar="REDIS_URL", help="Redis URL [env REDIS_URL; default redis://localhost:6379/0].")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    envvar="DW_QUEUE",
    help="Queue to serve; repeat for several, in priority order [env DW_QUEUE; default tasks].",
)
@click.option(
    "--name",
    "-n",
    envvar="DW_WORKER_NAME",
    help="Worker name (with --concurrency N, NAME-0 ... NAME-(N-1)) [default HOST-PID].",
)
@click.option("--burst", "-b", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    envvar="DW_CONCURRENCY",
    help="Worker processes on this host [env DW_CONCURRENCY].",
)
@click.option(
    "--threads",
    "-t",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    envvar="DW_THREADS",
    help="Task slots (threads) per process, for I/O-bound tasks [env DW_THREADS].",
)
@click.option(
    "--async-slots",
    "-a",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    envvar="DW_ASYNC_SLOTS",
    help="Coroutine tasks (async def, and the built-in sleep) awaited at once per process on one event loop, "
    "instead of a thread each; other tasks still run on --threads [env DW_ASYNC_SLOTS].",
)
@click.option(
    "--tasks",
    "task_modules",
    multiple=True,
    envvar="DW_TASK_MODULES",
    help="Python module whose @task functions to serve; repeatable [env DW_TASK_MODULES, space-separated].",
)
@click.option(
    "--task-timeout",
    type=click.FloatRange(min=0.01),
    envvar="DW_TASK_TIMEOUT",
    help="Seconds a task may run before it is stopped [env DW_TASK_TIMEOUT; default 60].",
)
@click.option(
    "--max-result-bytes",
    type=click.IntRange(min=1),
    envvar="DW_MAX_RESULT_BYTES",
    help="Largest JSON size of one task's result; a larger one fails that task [env DW_MAX_RESULT_BYTES].",
)
@click.option(
    "--crash-limit",
    type=click.IntRange(min=1),
    envvar="DW_CRASH_LIMIT",
    help="Deaths of a worker process while a task was running alone, after which that task fails with "
    "WorkerDied instead of running again; judged by the worker that re-runs the chunk "
    "[env DW_CRASH_LIMIT; default 2].",
)
@click.option(
    "--wait-for-redis",
    type=click.FloatRange(min=0),
    metavar="S",
    help="At start, wait up to S seconds for an unreachable Redis, then exit 3; 0 fails at once "
    "[env DW_WAIT_FOR_REDIS; default 30].",
)
@click.option("--log-tasks", is_flag=True, help="Print a line as each task is taken (the demo's log format).")
@click.option("--verbose", "-v", count=True, help="More logging: -v for each chunk, -vv for Redis details.")
@click.option("--quiet", is_flag=True, help="Only warnings and errors: no start and stop lines.")
@click.option(
    "--check",
    is_flag=True,
    help="Health probe, starts nothing: exit 0 if a worker of this host is registered and heartbeating, "
    "1 if none is registered, 5 if none has heartbeated lately, 3 if Redis is unreachable.",
)
def main(
    redis_url: str | None,
    queues: tuple[str, ...],
    name: str | None,
    burst: bool,
    concurrency: int,
    threads: int,
    async_slots: int,
    task_modules: tuple[str, ...],
    task_timeout: float | None,
    max_result_bytes: int | None,
    crash_limit: int | None,
    wait_for_redis: float | None,
    log_tasks: bool,
    verbose: int,
    quiet: bool,
    check: bool,
) -> None:
    """Serve tasks from Redis: take chunks from the queues, run them, publish the results.

    Start as many as you like, on any machine that can reach Redis. SIGTERM or Ctrl-C stops a worker
    after its current chunk (warm shutdown); a second signal stops it at once, and the chunk runs
    again on another worker.

    Each worker process prints a line on stderr when it starts (name, queues, tasks offered, Redis)
    and when it stops (and why).

    Exit codes: 0 stopped cleanly, 1 stopped by an error (e.g. its name is taken by a live worker),
    2 bad option or task module, 3 Redis unreachable or refused.
    """
    if check:
        sys.exit(run_check(redis_url))
    # RQ names its Redis client after the worker; names with spaces ("Worker 0") cannot be client
    # names, which only costs RQ its record of our IP address.
    warnings.filterwarnings("ignore", message="CLIENT SETNAME command not supported")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    if quiet:
        logging.getLogger("worker.lifecycle").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env(
            redis_url=redis_url,
            task_timeout=task_timeout,
            max_result_bytes=max_result_bytes,
            crash_limit=crash_limit,
            wait_for_redis=wait_for_redis,
        )
        queue_names = _queue_names(queues, settings)
        for idle in import_task_modules([m for entry in task_modules for m in entry.replace(",", " ").split()]):
            click.echo(f"worker: warning: task module {idle!r} registers no task", err=True)
        await_redis(settings)
    except DispatchError as exc:
        click.echo(f"worker: {exc}", err=True)
        sys.exit(exc.exit_code)

    def serve(index: int) -> None:
        defer_stop_signals()
        worker_name = _worker_name(name, index, concurrency)
        runtime = Runtime(settings, default_catalogue, worker_name, threads, log_tasks, async_slots)
        runtime_module.configure(runtime)
        runtime.pool()  # start the task threads now rather than during the first chunk
        worker = worker_class()(runtime, connect(settings), queue_names)
        if log_tasks:
            click.echo(f"[{worker_name}] Started")
        slots = f"{threads} thread slot(s), {async_slots} async slot(s)"
        announce_start(worker_name, queue_names, len(default_catalogue.names()), settings, slots)
        tune_long_running_process()  # see common/gctuning.py
        code = work_and_report(worker, burst, logging.getLevelName(level))
        if code:
            sys.exit(code)

    if concurrency == 1 and burst:
        try:
            serve(0)
        except KeyboardInterrupt:
            sys.exit(EXIT_INTERRUPTED)
        return

    death_notes = DeathNotes(settings)

    def hand_back(index: int, pid: int, code: int, stopping: bool) -> None:
        worker_name = _worker_name(name, index, concurrency, pid)
        if not stopping:  # first, so the recovery finds how the process died and what it ran (common.crash)
            death_notes(pid, code, worker_name, supervisor.running(index))
        client = connect(settings)
        try:
            count = hand_back_worker(client, worker_name, SafeJob, ChunkJobSerializer)
        finally:
            client.close()
        if count:
            logging.getLogger("worker").warning(
                "worker %s (pid %d) exited with %d: its chunk was handed back to the queue", worker_name, pid, code
            )

    board_slots = max(1, threads) + async_slots  # see worker.running
    supervisor = Supervisor(concurrency, serve, respawn=not burst, on_exit=hand_back, board_slots=board_slots)
    sys.exit(supervisor.run())


def _queue_names(queues: tuple[str, ...], settings: Settings) -> list[str]:
    names = [q for entry in queues for q in entry.replace(",", " ").split()] or [settings.queue]
    for queue in names:
        settings.with_overrides(queue=queue)  # validates the name
    return names


def _worker_name(name: str | None, index: int, concurrency: int, pid: int | None = None) -> str:
    if name is None:
        return f"{socket.gethostname()}-{pid or os.getpid()}"
    return name if concurrency == 1 else f"{name}-{index}"
