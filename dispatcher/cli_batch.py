"""The `dispatcher` commands that run a batch and print its results: submit, results, run."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from common.cli_options import CONTEXT, connection_options, settings_from_options, task_modules_option
from dispatcher.cli_options import limit_options, open_redis, output_options, submit_options


@click.command(context_settings=CONTEXT)
@click.argument("source", type=click.File("r", encoding="utf-8", lazy=True))
@submit_options
@output_options
@click.option("--no-wait", is_flag=True, help="Print the batch id and exit without waiting.")
@click.option(
    "--no-check",
    is_flag=True,
    help="Enqueue even tasks no live worker offers (they wait for a worker that offers them).",
)
@limit_options
@connection_options()
def submit(
    source: TextIO,
    fmt: str,
    strict: bool,
    chunk_size: int | None,
    as_json: bool,
    ordered: bool,
    timeout: float | None,
    progress: bool | None,
    no_wait: bool,
    no_check: bool,
) -> None:
    """Submit the tasks in SOURCE (a file, or - for stdin) and print their results.

    \b
    Text lines:  TASK ARG ...     e.g.  add 10 5     echo "hi there"
    JSON lines:  {"task": "add", "args": [10, 5], "kwargs": {}, "id": "my-id"}
    Blank lines and lines starting with # are skipped.

    A task whose name no live worker of the queue offers is never enqueued: it fails alone
    (TaskNotOffered), the rest runs, exit 1. With no live worker at all, the tasks wait for one.
    --no-check enqueues every name (each waits for a worker that offers it).
    """
    from dispatcher.batch import SubmitOptions
    from dispatcher.cli_report import exit_code, offered_tasks, read_items, run_and_report

    settings = settings_from_options()
    client = open_redis(settings)
    streaming = source.name in ("<stdin>", "-")
    options = SubmitOptions(
        chunk_size, not no_wait, timeout, source=source.name, streaming=streaming, check_tasks=not no_check
    )
    offered = None if no_check else offered_tasks(client, settings)
    items = read_items(source, fmt, strict, settings, offered, live=streaming)
    summary = run_and_report(client, settings, items, options, as_json, ordered, progress)
    sys.exit(exit_code(summary))


@click.command(context_settings=CONTEXT)
@click.argument("batch_id")
@output_options
@connection_options()
def results(batch_id: str, as_json: bool, ordered: bool, timeout: float | None, progress: bool | None) -> None:
    """Print every result of batch BATCH_ID: those already in Redis and those still to come.

    Exit 5 when the batch's input was not all submitted (its dispatcher stopped or died midway): the
    summary says how many lines were never submitted, when that is known.
    """
    from dispatcher.batch import await_batch
    from dispatcher.cli_report import exit_code, progress_line, summarize
    from dispatcher.output import ResultWriter

    settings = settings_from_options()
    client = open_redis(settings)
    writer = ResultWriter(sys.stdout, as_json, ordered)
    bar = progress_line(progress)
    try:
        summary = await_batch(client, settings, batch_id, writer, timeout, bar)
    finally:
        writer.close()
        if bar:
            bar.close()
    summarize(summary, as_json, died=writer.died)
    sys.exit(exit_code(summary))


@click.command(context_settings=CONTEXT)
@click.argument("source", type=click.File("r", encoding="utf-8", lazy=True))
@click.option(
    "--local",
    "local_workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Local worker processes to start.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Task slots (threads) per local worker process.",
)
@task_modules_option("the local workers serve")
@submit_options
@output_options
@limit_options
def run(
    source: TextIO,
    local_workers: int,
    threads: int,
    task_modules: tuple[str, ...],
    fmt: str,
    strict: bool,
    chunk_size: int | None,
    as_json: bool,
    ordered: bool,
    timeout: float | None,
    progress: bool | None,
) -> None:
    """Run SOURCE on this machine alone: an embedded Redis, N local workers, then stop them all.

    The batch lives only as long as this command: interrupted or timed out, it ends here.
    """
    from dispatcher.batch import SubmitOptions
    from dispatcher.cli_report import exit_code, offered_tasks, read_items, run_and_report
    from dispatcher.local import EmbeddedRedis, LocalWorkers, task_module_args, wait_for_workers
    from dispatcher.localrun import ended_with_local_redis

    worker_args = ["--threads", str(threads), *task_module_args(task_modules)]
    with ended_with_local_redis(), EmbeddedRedis() as server:
        settings = settings_from_options(redis_url=server.url)
        client = open_redis(settings)
        with LocalWorkers(server.url, local_workers, worker_args) as workers:
            wait_for_workers(client, local_workers, workers=workers)
            options = SubmitOptions(chunk_size, True, timeout, source=source.name, check_tasks=True)
            items = read_items(source, fmt, strict, settings, offered_tasks(client, settings))
            summary = run_and_report(client, settings, items, options, as_json, ordered, progress, reattachable=False)
    sys.exit(exit_code(summary))
