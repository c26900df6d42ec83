"""The `dispatcher` commands around batches: status, cancel, demo, dashboard."""

from __future__ import annotations

import contextlib
import sys

import click

from common.cli import CONTEXT, connection_options, settings_from_options


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="A one-shot machine-readable snapshot.")
@click.option("--watch", "-w", is_flag=True, help="A live view, redrawn every --interval seconds (Ctrl-C quits).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@click.option("--count", type=click.IntRange(min=1), help="With --watch: stop after this many redraws.")
@connection_options()
def status(as_json: bool, watch: bool, interval: float, count: int | None) -> None:
    """Show queue depth (with each user task's queue), live workers (tasks done, tasks/s, the user
    tasks each offers), who offers each user task, batches in flight, failures.

    rq's own tools work on the same queues: `rq info --url URL -S rq.serializers.JSONSerializer`.
    """
    import json

    from dispatcher.cli_report import open_redis
    from dispatcher.status import collect_status
    from dispatcher.statusview import render
    from dispatcher.statusview import watch as watch_status

    if as_json and watch:
        raise click.UsageError("--json is a one-shot snapshot; it cannot be combined with --watch")
    settings = settings_from_options()
    client = open_redis(settings)
    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # quitting the live view is its normal end
            watch_status(lambda: collect_status(client, settings), sys.stdout, interval, count)
        return
    snapshot = collect_status(client, settings)
    click.echo(json.dumps(snapshot, indent=2) if as_json else render(snapshot))


@click.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="A machine-readable report.")
@connection_options()
def cancel(batch_id: str, as_json: bool) -> None:
    """Cancel batch BATCH_ID: its queued chunks never run; chunks already running finish.

    Every task left without a result gets a Cancelled error result, so a dispatcher waiting on the
    batch ends promptly (exit 1: cancelled tasks count as failed).
    """
    import json

    from dispatcher.cancel import cancel_batch
    from dispatcher.cli_report import open_redis

    settings = settings_from_options()
    report = cancel_batch(open_redis(settings), settings, batch_id)
    indices = sorted(r.index for r in report.cancelled)
    if as_json:
        fields = {
            "batch_id": batch_id,
            "cancelled_tasks": indices,
            "cancelled_ids": [r.id for r in report.cancelled],
            "cancelled_chunks": report.cancelled_chunks,
            "chunks_left_running": report.left_chunks,
            "chunks_finished": report.finished_chunks,
        }
        click.echo(json.dumps(fields))
        return
    cancelled = f"cancelled {len(indices)} tasks in {len(report.cancelled_chunks)} queued chunks"
    finished = f"; {report.finished_chunks} chunks had finished (or were cancelled before)"
    click.echo(
        f"batch {batch_id}: {cancelled}; {report.left_chunks} chunks already running go on"
        + (finished if report.finished_chunks else "")
    )
    if indices:
        click.echo(f"cancelled tasks (input positions): {ranges([i + 1 for i in indices])}")


def ranges(numbers: list[int]) -> str:
    """'1-3, 7' for [1, 2, 3, 7]."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


@click.command(context_settings=CONTEXT)
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True, help="Local workers.")
@click.option(
    "--pace",
    type=click.FloatRange(0, 5),
    default=0.1,
    show_default=True,
    help="Seconds between incoming tasks.",
)
def demo(workers: int, pace: float) -> None:
    """The dispatcher/worker pattern, live: embedded Redis, local workers, a stream of tasks."""
    from dispatcher.demo import run_demo

    sys.exit(run_demo(workers, pace))


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("dashboard_args", nargs=-1, type=click.UNPROCESSED)
def dashboard(dashboard_args: tuple[str, ...]) -> None:
    """rq-dashboard, with our JSON jobs readable on every page (needs the `monitoring` extra).

    Takes rq-dashboard's own options and RQ_DASHBOARD_* variables; pass --json. With rq-dashboard
    installed, `--help` shows them.
    """
    from dispatcher.dashboard import main as dashboard_main
    from dispatcher.dashboard import unavailable

    problem = unavailable()
    if problem is not None and {"-h", "--help"} & set(dashboard_args):
        click.echo(f"{click.get_current_context().get_help()}\n\n{problem}")
        return
    dashboard_main(list(dashboard_args), prog_name="dispatcher dashboard")
