"""The `dispatcher` commands that run a batch and print its results (submit, results, run), and their options."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import click

from common.cli import CONTEXT, connection_options, setting_option, settings_from_options, task_modules_option

F = TypeVar("F", bound=Callable[..., Any])


def _apply(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply `options` so that --help lists them in the order given."""

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


output_options = _apply(
    click.option("--json", "as_json", is_flag=True, help="One JSON object per task on stdout."),
    click.option("--ordered", is_flag=True, help="Print in input order (default: as results arrive)."),
    click.option("--timeout", type=click.FloatRange(min=0), help="Give up waiting after S seconds (exit 4)."),
    click.option(
        "--progress/--no-progress",
        default=None,
        help="Progress line on stderr [default: when stderr is a terminal].",
    ),
)
"""Options of every command that prints task results."""

submit_options = _apply(
    click.option(
        "--format",
        "fmt",
        type=click.Choice(["auto", "text", "jsonl"]),
        default="auto",
        show_default=True,
        help="Input format; auto: .jsonl/.ndjson/.json files, or input whose first task line starts with {, "
        "are JSON lines.",
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="Refuse the whole batch (exit 2, nothing enqueued) if any line is malformed or names a task no "
        "live worker offers; reads the input through first.",
    ),
    click.option(
        "--chunk-size",
        type=click.IntRange(1, 100_000),
        help="Tasks per RQ job [default: automatic, from batch size and live workers].",
    ),
    setting_option("result_ttl", type=click.IntRange(1)),
)
"""Options of `submit` and `run`."""

limit_options = _apply(
    setting_option("max_arg_bytes", type=click.IntRange(1)),
    setting_option("max_batch_tasks", type=click.IntRange(1)),
)
"""--max-arg-bytes and --max-batch-tasks (of `submit` and `run`)."""


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
    from dispatcher.cli_report import exit_code, offered_tasks, open_redis, read_items, run_and_report

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
    from dispatcher.cli_report import exit_code, open_redis, progress_line, summarize
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
    from dispatcher.cli_report import exit_code, offered_tasks, open_redis, read_items, run_and_report
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
