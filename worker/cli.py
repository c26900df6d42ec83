"""The `worker` command: serve chunks from Redis queues with N processes on this host."""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings

import click

from common import default_catalogue
from common.cli import (
    CONTEXT,
    EdgeCommand,
    connection_options,
    error_edge,
    setting_option,
    settings_from_options,
    task_modules_option,
)
from common.connection import connect
from common.gctuning import tune_long_running_process
from common.jobdata import ChunkJobSerializer
from common.settings import Settings
from worker import runtime as runtime_module
from worker.deathnote import DeathNotes
from worker.handback import hand_back_worker
from worker.health import run_check
from worker.job import SafeJob
from worker.lifecycle import announce_start, await_redis, work_and_report
from worker.runner import defer_stop_signals, worker_class
from worker.runtime import Runtime, import_task_modules
from worker.supervisor import Supervisor

PROG = "worker"
"""The command's name, which starts its messages on stderr."""


@click.command(PROG, cls=EdgeCommand, context_settings=CONTEXT)
@connection_options(many_queues=True)
@click.option(
    "--name",
    "-n",
    envvar="DW_WORKER_NAME",
    show_envvar=True,
    show_default="HOST-PID",
    help="Worker name (with --concurrency N, NAME-0 ... NAME-(N-1)).",
)
@click.option("--burst", "-b", is_flag=True, help="Exit when the queues are empty.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    envvar="DW_CONCURRENCY",
    show_envvar=True,
    help="Worker processes on this host.",
)
@click.option(
    "--threads",
    "-t",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    envvar="DW_THREADS",
    show_envvar=True,
    help="Task slots (threads) per process, for I/O-bound tasks.",
)
@click.option(
    "--async-slots",
    "-a",
    type=click.IntRange(0, 100_000),
    default=0,
    show_default=True,
    envvar="DW_ASYNC_SLOTS",
    show_envvar=True,
    help="Coroutine tasks (async def, and the built-in sleep) awaited at once per process on one event loop, "
    "instead of a thread each; other tasks still run on --threads.",
)
@task_modules_option("the worker serves")
@setting_option("task_timeout", type=click.FloatRange(min=0.01))
@setting_option("max_result_bytes", type=click.IntRange(min=1))
@setting_option("crash_limit", type=click.IntRange(min=1))
@setting_option("wait_for_redis", type=click.FloatRange(min=0), metavar="S")
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
    queues: tuple[str, ...],
    name: str | None,
    burst: bool,
    concurrency: int,
    threads: int,
    async_slots: int,
    task_modules: tuple[str, ...],
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
    2 bad option or task module, 3 Redis unreachable or refused, 130 interrupted.
    """
    if check:
        sys.exit(run_check(settings_from_options()))
    # RQ names its Redis client after the worker; names with spaces ("Worker 0") cannot be client
    # names, which only costs RQ its record of our IP address.
    warnings.filterwarnings("ignore", message="CLIENT SETNAME command not supported")
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    if quiet:
        logging.getLogger("worker.lifecycle").setLevel(logging.WARNING)
    settings = settings_from_options()
    queue_names = _queue_names(queues, settings)
    for idle in import_task_modules([m for entry in task_modules for m in entry.replace(",", " ").split()]):
        click.echo(f"worker: warning: task module {idle!r} registers no task", err=True)
    await_redis(settings)

    def serve(index: int) -> None:
        with error_edge(PROG):  # in a supervised process, this is the edge the command's is not
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
        serve(0)
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
