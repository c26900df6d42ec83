"""The options that several `dispatcher` commands share, and the Redis client they open."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from common.cli_options import setting_option

if TYPE_CHECKING:
    import redis

    from common.settings import Settings

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


def open_redis(settings: Settings) -> redis.Redis:
    """A client that has answered PING (so exit 3 comes before any work)."""
    from common.connection import check_connection, connect

    client = connect(settings)
    check_connection(client, settings)
    return client
