"""The one edge where errors become messages and exit codes, for both `dispatcher` and `worker`.

Commands raise; they never choose an exit code for an error. A DispatchError becomes its message
and its `exit_code` (common.errors draws the tree), Ctrl-C exits 130, a closed stdout 141, and a
Redis or network error that no layer below turned into a DispatchError is described (without its
password) and exits as that description says. Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

# common.errors is imported when a command runs, not at start: `--help` needs none of it.
from common.cli_options import redis_url_in_use


@contextlib.contextmanager
def error_edge(prog: str) -> Iterator[None]:
    """Turn what escapes the block into `prog: message` on stderr and its exit code (SystemExit)."""
    from common.errors import EXIT_INTERRUPTED, BatchInterrupted, DispatchError

    try:
        yield
    except BrokenPipeError:
        _end_quietly()
    except DispatchError as exc:
        _fail(prog, str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:
        _fail(prog, str(exc) if isinstance(exc, BatchInterrupted) else "interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        if not (isinstance(exc, OSError) or _is_redis_error(exc)):
            raise
        from common.connection import describe_redis_error

        error = describe_redis_error(redis_url_in_use(), exc)
        _fail(prog, str(error), error.exit_code)


class EdgeGroup(click.Group):
    """A click group whose subcommands run inside the error edge (named after the group)."""

    def invoke(self, ctx: click.Context) -> Any:
        with error_edge(self.name or str(ctx.info_name)):
            return super().invoke(ctx)


class EdgeCommand(click.Command):
    """A click command that runs inside the error edge (named after the command)."""

    def invoke(self, ctx: click.Context) -> Any:
        with error_edge(self.name or str(ctx.info_name)):
            return super().invoke(ctx)


def _is_redis_error(exc: Exception) -> bool:
    """A redis-py error (redis is loaded once a command has used it; if it is not, this is none)."""
    loaded = sys.modules.get("redis")
    return loaded is not None and isinstance(exc, loaded.RedisError)


def _fail(prog: str, message: str, code: int) -> None:
    click.echo(f"{prog}: {message}", err=True)
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
