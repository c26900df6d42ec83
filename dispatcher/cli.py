"""The `dispatcher` command: submit batches, await or reattach to results, status, local mode, demo."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

if TYPE_CHECKING:
    import redis

    from common.settings import Settings
    from dispatcher.batch import BatchSummary, SubmitOptions
    from dispatcher.offered import OfferedTasks
    from dispatcher.output import ProgressLine
    from dispatcher.reader import LiveItem

# Only click is imported at start: `dispatcher --help` and usage errors need nothing else, and
# redis, rq and the task catalogue are most of a command's start-up time. Each command imports
# what it uses when it runs.

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def connection_options(func: F) -> F:
    """--redis-url and --queue, with their environment variables."""
    func = click.option("--queue", "-q", envvar="DW_QUEUE", help="RQ queue [env DW_QUEUE; default tasks].")(func)
    return click.option(
        "--redis-url", envvar="REDIS_URL", help="Redis URL [env REDIS_URL; default redis://localhost:6379/0]."
    )(func)


def output_options(func: F) -> F:
    """Options shared by every command that prints task results."""
    for option in reversed([
        click.option("--json", "as_json", is_flag=True, help="One JSON object per task on stdout."),
        click.option("--ordered", is_flag=True, help="Print in input order (default: as results arrive)."),
        click.option("--timeout", type=click.FloatRange(min=0), help="Give up waiting after S seconds (exit 4)."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress line on stderr [default: when stderr is a terminal]."),
    ]):  # fmt: skip
        func = option(func)
    return func


def submit_options(func: F) -> F:
    """Options shared by `submit` and `run`."""
    for option in reversed([
        click.option("--format", "fmt", type=click.Choice(["auto", "text", "jsonl"]), default="auto",
                     show_default=True, help="Input format; auto: .jsonl/.ndjson/.json files, or input whose "
                     "first task line starts with {, are JSON lines."),
        click.option("--strict", is_flag=True, help="Refuse the whole batch (exit 2, nothing enqueued) if any "
                     "line is malformed or names a task no live worker offers; reads the input through first."),
        click.option("--chunk-size", type=click.IntRange(1, 100_000),
                     help="Tasks per RQ job [default: automatic, from batch size and live workers]."),
        click.option("--result-ttl", type=click.IntRange(1), envvar="DW_RESULT_TTL",
                     help="Seconds results stay in Redis [env DW_RESULT_TTL; default 86400]."),
    ]):  # fmt: skip
        func = option(func)
    return func


def limit_options(func: F) -> F:
    """--max-arg-bytes and --max-batch-tasks; kept in the context and applied by make_settings."""

    def remember(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
        if value is not None:
            ctx.meta.setdefault("limits", {})[param.name] = value

    for name, env, what in reversed([
        ("max_arg_bytes", "DW_MAX_ARG_BYTES", "Largest JSON size of one task's arguments, in bytes"),
        ("max_batch_tasks", "DW_MAX_BATCH_TASKS", "Most tasks in one batch"),
    ]):  # fmt: skip
        func = click.option(f"--{name.replace('_', '-')}", name, type=click.IntRange(1), expose_value=False,
                            callback=remember, help=f"{what} [env {env}].")(func)  # fmt: skip
    return func


def handle_errors(func: F) -> F:
    """The one edge where errors become messages and exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from common.errors import EXIT_INTERRUPTED, BatchInterrupted, DispatchError

        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            _end_quietly()
        except DispatchError as exc:
            _fail(str(exc), exc.exit_code)
        except BatchInterrupted as exc:
            _fail(str(exc), EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            if not (isinstance(exc, OSError) or _is_redis_error(exc)):
                raise
            from common.connection import describe_redis_error

            url = click.get_current_context().meta.get("redis_url", "")
            error = describe_redis_error(url, exc)
            _fail(str(error), error.exit_code)

    return wrapper  # type: ignore[return-value]


def _is_redis_error(exc: Exception) -> bool:
    """A redis-py error (redis is loaded once a command has used it; if it is not, this is none)."""
    loaded = sys.modules.get("redis")
    return loaded is not None and isinstance(exc, loaded.RedisError)


def _fail(message: str, code: int) -> None:
    click.echo(f"dispatcher: {message}", err=True)
    sys.exit(code)


def _end_quietly() -> None:
    """The reader of stdout went away (`dispatcher ... | head`): stop without a word, as Unix tools do.

    Python's documented recipe: point stdout at /dev/null, so that the flush at exit cannot raise
    again. The exit code is a shell's for a tool killed by SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    from common.errors import EXIT_BROKEN_PIPE

    sys.exit(EXIT_BROKEN_PIPE)


def make_settings(**overrides: Any) -> Settings:
    """Settings from the environment with CLI overrides; remembers the URL for error messages."""
    from common.settings import Settings

    context = click.get_current_context()
    settings = Settings.from_env(**{**context.meta.get("limits", {}), **overrides})
    context.meta["redis_url"] = settings.redis_url
    return settings


def open_redis(settings: Settings) -> redis.Redis:
    """A client that has answered PING (so exit 3 comes before any work)."""
    from common.connection import check_connection, connect

    client = connect(settings)
    check_connection(client, settings)
    return client


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="redis-dispatch")
def main() -> None:
    """Dispatch batches of tasks to workers through Redis, and collect their results.

    \b
    Exit codes: 0 every task ok; 1 some tasks failed; 2 usage or input error;
                3 Redis unreachable or refused; 4 timed out (the batch goes on);
                5 the batch's input was not all submitted; 141 stdout closed.
    """


@main.command(context_settings=CONTEXT)
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
@connection_options
@handle_errors
def submit(source: TextIO, fmt: str, strict: bool, chunk_size: int | None, result_ttl: int | None,
           as_json: bool, ordered: bool, timeout: float | None, progress: bool | None, no_wait: bool,
           no_check: bool, redis_url: str | None, queue: str | None) -> None:  # fmt: skip
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

    settings = make_settings(redis_url=redis_url, queue=queue, result_ttl=result_ttl)
    client = open_redis(settings)
    streaming = source.name in ("<stdin>", "-")
    options = SubmitOptions(chunk_size, not no_wait, timeout, source=source.name, streaming=streaming,
                            check_tasks=not no_check)  # fmt: skip
    offered = None if no_check else _offered(client, settings)
    items = _items(source, fmt, strict, settings, offered, live=streaming)
    summary = _run_and_report(client, settings, items, options, as_json, ordered, progress)
    sys.exit(_exit_code(summary))


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@output_options
@connection_options
@handle_errors
def results(batch_id: str, as_json: bool, ordered: bool, timeout: float | None, progress: bool | None,
            redis_url: str | None, queue: str | None) -> None:  # fmt: skip
    """Print every result of batch BATCH_ID: those already in Redis and those still to come.

    Exit 5 when the batch's input was not all submitted (its dispatcher stopped or died midway): the
    summary says how many lines were never submitted, when that is known.
    """
    from dispatcher.batch import await_batch
    from dispatcher.output import ResultWriter

    settings = make_settings(redis_url=redis_url, queue=queue)
    client = open_redis(settings)
    writer = ResultWriter(sys.stdout, as_json, ordered)
    bar = _progress(progress)
    try:
        summary = await_batch(client, settings, batch_id, writer, timeout, bar)
    finally:
        writer.close()
        if bar:
            bar.close()
    _summarize(summary, as_json, died=writer.died)
    sys.exit(_exit_code(summary))


@main.command(context_settings=CONTEXT)
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
@connection_options
@handle_errors
def status(as_json: bool, watch: bool, interval: float, count: int | None, redis_url: str | None,
           queue: str | None) -> None:  # fmt: skip
    """Show queue depth (with each user task's queue), live workers (tasks done, tasks/s, the user
    tasks each offers), who offers each user task, batches in flight, failures.

    rq's own tools work on the same queues: `rq info --url URL -S rq.serializers.JSONSerializer`.
    """
    import json

    from dispatcher.status import collect_status
    from dispatcher.statusview import render
    from dispatcher.statusview import watch as watch_status

    if as_json and watch:
        raise click.UsageError("--json is a one-shot snapshot; it cannot be combined with --watch")
    settings = make_settings(redis_url=redis_url, queue=queue)
    client = open_redis(settings)
    if watch:
        with contextlib.suppress(KeyboardInterrupt):  # quitting the live view is its normal end
            watch_status(lambda: collect_status(client, settings), sys.stdout, interval, count)
        return
    snapshot = collect_status(client, settings)
    click.echo(json.dumps(snapshot, indent=2) if as_json else render(snapshot))


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="A machine-readable report.")
@connection_options
@handle_errors
def cancel(batch_id: str, as_json: bool, redis_url: str | None, queue: str | None) -> None:
    """Cancel batch BATCH_ID: its queued chunks never run; chunks already running finish.

    Every task left without a result gets a Cancelled error result, so a dispatcher waiting on the
    batch ends promptly (exit 1: cancelled tasks count as failed).
    """
    import json

    from dispatcher.cancel import cancel_batch

    settings = make_settings(redis_url=redis_url, queue=queue)
    report = cancel_batch(open_redis(settings), settings, batch_id)
    indices = sorted(r.index for r in report.cancelled)
    if as_json:
        click.echo(json.dumps({
            "batch_id": batch_id, "cancelled_tasks": indices, "cancelled_ids": [r.id for r in report.cancelled],
            "cancelled_chunks": report.cancelled_chunks, "chunks_left_running": report.left_chunks,
        }))  # fmt: skip
        return
    click.echo(f"batch {batch_id}: cancelled {len(indices)} tasks in {len(report.cancelled_chunks)} queued chunks; "
               f"{report.left_chunks} chunks already running or finished go on")  # fmt: skip
    if indices:
        click.echo(f"cancelled tasks (input positions): {_ranges([i + 1 for i in indices])}")


def _ranges(numbers: list[int]) -> str:
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


@main.command(context_settings=CONTEXT)
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
@click.option(
    "--tasks",
    "task_modules",
    multiple=True,
    envvar="DW_TASK_MODULES",
    help="Python module whose @task functions the local workers serve; repeatable "
    "[env DW_TASK_MODULES, space-separated].",
)
@submit_options
@output_options
@limit_options
@handle_errors
def run(source: TextIO, local_workers: int, threads: int, task_modules: tuple[str, ...], fmt: str, strict: bool,
        chunk_size: int | None, result_ttl: int | None, as_json: bool, ordered: bool, timeout: float | None,
        progress: bool | None) -> None:  # fmt: skip
    """Run SOURCE on this machine alone: an embedded Redis, N local workers, then stop them all.

    The batch lives only as long as this command: interrupted or timed out, it ends here.
    """
    from dispatcher.batch import SubmitOptions
    from dispatcher.local import EmbeddedRedis, LocalWorkers, task_module_args, wait_for_workers
    from dispatcher.localrun import ended_with_local_redis

    worker_args = ["--threads", str(threads), *task_module_args(task_modules)]
    with ended_with_local_redis(), EmbeddedRedis() as server:
        settings = make_settings(redis_url=server.url, result_ttl=result_ttl)
        client = open_redis(settings)
        with LocalWorkers(server.url, local_workers, worker_args) as workers:
            wait_for_workers(client, local_workers, workers=workers)
            options = SubmitOptions(chunk_size, True, timeout, source=source.name, check_tasks=True)
            items = _items(source, fmt, strict, settings, _offered(client, settings))
            summary = _run_and_report(client, settings, items, options, as_json, ordered, progress, reattachable=False)
    sys.exit(_exit_code(summary))


@main.command(context_settings=CONTEXT)
@click.option("--workers", type=click.IntRange(1, 16), default=3, show_default=True, help="Local workers.")
@click.option(
    "--pace",
    type=click.FloatRange(0, 5),
    default=0.1,
    show_default=True,
    help="Seconds between incoming tasks.",
)
@handle_errors
def demo(workers: int, pace: float) -> None:
    """The dispatcher/worker pattern, live: embedded Redis, local workers, a stream of tasks."""
    from dispatcher.demo import run_demo

    sys.exit(run_demo(workers, pace))


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("dashboard_args", nargs=-1, type=click.UNPROCESSED)
@handle_errors
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


def _offered(client: redis.Redis, settings: Settings) -> OfferedTasks:
    """What live workers offer; with none, says on stderr that the tasks wait for one."""
    from dispatcher.offered import OfferedTasks

    offered = OfferedTasks(client, settings)
    offered.refresh()
    if not offered.workers:
        notice = f"no live worker serves queue {settings.queue!r} yet: the tasks wait for a worker"
        click.echo(f"dispatcher: {notice} (start one with `worker`; --timeout bounds the wait)", err=True)
    return offered


def _items(source: TextIO, fmt: str, strict: bool, settings: Settings, offered: OfferedTasks | None,
           live: bool = False) -> Iterator[LiveItem]:  # fmt: skip
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


def _progress(enabled: bool | None) -> ProgressLine | None:
    from dispatcher.output import ProgressLine

    show = sys.stderr.isatty() if enabled is None else enabled
    return ProgressLine() if show else None


def _run_and_report(client: redis.Redis, settings: Settings, items: Iterator[LiveItem], options: SubmitOptions,
                    as_json: bool, ordered: bool, progress: bool | None,
                    reattachable: bool = True) -> BatchSummary:  # fmt: skip
    import json

    from common.errors import InputError
    from dispatcher.batch import submit_batch
    from dispatcher.output import ResultWriter
    from dispatcher.submit import new_batch_id

    writer = ResultWriter(sys.stdout, as_json, ordered)
    bar = _progress(progress) if options.wait else None
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
    _summarize(summary, as_json, time.monotonic() - started, writer.died)
    return summary


def _summarize(
    summary: BatchSummary, as_json: bool, elapsed: float | None = None, died: list[str] | None = None
) -> None:
    rate = f" in {elapsed:.2f} s ({summary.total / max(elapsed, 1e-9):,.0f} tasks/s)" if elapsed else ""
    click.echo(f"batch {summary.batch_id}: {summary.total} tasks, {summary.ok} ok, {summary.failed} failed{rate}",
               err=True)  # fmt: skip
    from dispatcher.output import died_summary, incomplete_summary

    if died:
        click.echo(f"batch {summary.batch_id}: {died_summary(died)}", err=True)
    if summary.incomplete is not None:
        click.echo(f"batch {summary.batch_id}: {incomplete_summary(summary.incomplete)}", err=True)
    if summary.not_offered:
        click.echo(f"dispatcher: {summary.not_offered}", err=True)


def _exit_code(summary: BatchSummary) -> int:
    from common.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_TASKS_FAILED

    if summary.incomplete is not None:
        return EXIT_INCOMPLETE
    if not summary.complete:
        return EXIT_OK
    return EXIT_TASKS_FAILED if summary.failed else EXIT_OK
