"""What the `dispatcher` commands do once they run: open Redis, read the input, run the batch, report it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    import redis

    from common.settings import Settings
    from dispatcher.batch import BatchSummary, SubmitOptions
    from dispatcher.offered import OfferedTasks
    from dispatcher.output import ProgressLine
    from dispatcher.reader import LiveItem


def open_redis(settings: Settings) -> redis.Redis:
    """A client that has answered PING (so exit 3 comes before any work)."""
    from common.connection import check_connection, connect

    client = connect(settings)
    check_connection(client, settings)
    return client


def offered_tasks(client: redis.Redis, settings: Settings) -> OfferedTasks:
    """What live workers offer; with none, says on stderr that the tasks wait for one."""
    from dispatcher.offered import OfferedTasks

    offered = OfferedTasks(client, settings)
    offered.refresh()
    if not offered.workers:
        notice = f"no live worker serves queue {settings.queue!r} yet: the tasks wait for a worker"
        click.echo(f"dispatcher: {notice} (start one with `worker`; --timeout bounds the wait)", err=True)
    return offered


def read_items(
    source: TextIO,
    fmt: str,
    strict: bool,
    settings: Settings,
    offered: OfferedTasks | None,
    live: bool = False,
) -> Iterator[LiveItem]:
    """The tasks of SOURCE; from a `live` producer (stdin), with INPUT_IDLE markers while it waits."""
    from dispatcher.batch import refuse_bad_input
    from dispatcher.lines import LIVE_INPUT_IDLE_SECONDS
    from dispatcher.reader import detect_format, read_live_stream, read_stream

    kind = detect_format(getattr(source, "name", None), fmt)
    stream = source.buffer  # bytes: each line is decoded on its own
    if not strict and live:
        return read_live_stream(stream, kind, settings.max_arg_bytes, LIVE_INPUT_IDLE_SECONDS)
    if not strict:
        return read_stream(stream, kind, settings.max_arg_bytes)
    if stream.seekable():
        refuse_bad_input(read_stream(stream, kind, settings.max_arg_bytes), offered)
        stream.seek(0)
        return read_stream(stream, kind, settings.max_arg_bytes)
    buffered = list(read_stream(stream, kind, settings.max_arg_bytes))
    refuse_bad_input(buffered, offered)
    return iter(buffered)


def progress_line(enabled: bool | None) -> ProgressLine | None:
    """The progress line on stderr: when asked, else when stderr is a terminal."""
    from dispatcher.output import ProgressLine

    show = sys.stderr.isatty() if enabled is None else enabled
    return ProgressLine() if show else None


def run_and_report(
    client: redis.Redis,
    settings: Settings,
    items: Iterator[LiveItem],
    options: SubmitOptions,
    as_json: bool,
    ordered: bool,
    progress: bool | None,
    reattachable: bool = True,
) -> BatchSummary:
    """Submit the batch, print its results as they come, then its summary on stderr."""
    import json

    from common.errors import InputError
    from dispatcher.batch import submit_batch
    from dispatcher.output import ResultWriter
    from dispatcher.submit import new_batch_id

    writer = ResultWriter(sys.stdout, as_json, ordered)
    bar = progress_line(progress) if options.wait else None
    started = time.monotonic()
    batch_id = new_batch_id()
    if options.wait and reattachable:
        # First thing on stderr, so the batch can be reattached to even if this process is killed.
        click.echo(f"dispatcher: batch {batch_id}: submitting (`dispatcher results {batch_id}` reattaches)", err=True)
    try:
        summary = submit_batch(client, settings, items, options, writer, bar, batch_id=batch_id)
    except UnicodeDecodeError as exc:
        raise InputError(f"input is not UTF-8 text: {exc}") from None
    finally:
        writer.close()
        if bar:
            bar.close()
    if not options.wait:
        click.echo(json.dumps({"batch_id": summary.batch_id, "total": summary.total}) if as_json else summary.batch_id)
        if summary.not_offered:
            click.echo(f"dispatcher: {summary.not_offered}", err=True)
        return summary
    summarize(summary, as_json, time.monotonic() - started, writer.died)
    return summary


def summarize(
    summary: BatchSummary, as_json: bool, elapsed: float | None = None, died: list[str] | None = None
) -> None:
    """The summary lines on stderr: counts, rate, tasks whose worker died, what was never submitted."""
    from dispatcher.output import died_summary, incomplete_summary

    rate = f" in {elapsed:.2f} s ({summary.total / max(elapsed, 1e-9):,.0f} tasks/s)" if elapsed else ""
    counts = f"{summary.total} tasks, {summary.ok} ok, {summary.failed} failed"
    click.echo(f"batch {summary.batch_id}: {counts}{rate}", err=True)
    if died:
        click.echo(f"batch {summary.batch_id}: {died_summary(died)}", err=True)
    if summary.incomplete is not None:
        click.echo(f"batch {summary.batch_id}: {incomplete_summary(summary.incomplete)}", err=True)
    if summary.not_offered:
        click.echo(f"dispatcher: {summary.not_offered}", err=True)


def exit_code(summary: BatchSummary) -> int:
    """The outcome of a batch as an exit code: 5 input not all submitted, 1 some tasks failed, else 0."""
    from common.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_TASKS_FAILED

    if summary.incomplete is not None:
        return EXIT_INCOMPLETE
    if not summary.complete:
        return EXIT_OK
    return EXIT_TASKS_FAILED if summary.failed else EXIT_OK
