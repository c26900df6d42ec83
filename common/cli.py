"""What both CLIs share: the options of settings, built from the table, and the one error edge.

Each option of a setting takes its environment variable, default and help from the table
(common.settings_table), and click shows the default and the variable in `--help`. Such an option
stores its value in the click context, where `settings_from_options` finds it, so that commands do
not pass settings around.

Commands raise; they never choose an exit code for an error. At the edge (`EdgeGroup`, `EdgeCommand`,
`error_edge`) a DispatchError becomes `PROG: message` on stderr and its `exit_code` (common.errors
draws the tree), Ctrl-C exits 130, a closed stdout 141, and a Redis or network error that no layer
below turned into a DispatchError is described (without its password) and exits as that description
says. Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from common.settings_table import SETTINGS

if TYPE_CHECKING:
    from common.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
"""The context settings of every command of both CLIs."""

_GIVEN = "settings"
"""Where the options of settings keep their values in the click context's `meta`."""
_REDIS_URL = "redis_url"
"""Where the Redis URL in use is kept in `meta`, for the messages of the error edge."""

TASK_MODULES_ENV = "DW_TASK_MODULES"
"""Modules of user tasks, space-separated (not a field of Settings: only the processes that run
tasks import them)."""


def setting_option(
    name: str,
    *flags: str,
    type: click.ParamType[Any] | None = None,
    help: str | None = None,
    dest: str | None = None,
    multiple: bool = False,
    metavar: str | None = None,
) -> Callable[[F], F]:
    """The option of setting `name` (flags default to --name-with-dashes); its environment variable,
    default and help come from the table. With `dest`, the value is passed to the command under that
    name; otherwise `settings_from_options` applies it."""
    row = SETTINGS[name]
    flags = flags or (f"--{name.replace('_', '-')}",)
    exposed: dict[str, Any] = {} if dest is not None else {"expose_value": False, "callback": _remember}
    return click.option(
        *flags,
        dest or name,
        type=type,
        envvar=row.env,
        show_envvar=True,
        default=(row.default,) if multiple else row.default,
        show_default=True,
        multiple=multiple,
        metavar=metavar,
        help=help or row.help,
        **exposed,
    )


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_GIVEN, {})[param.name] = value


def given(name: str) -> Any:
    """The value of setting `name` as the options gave it (None when the command has no such option)."""
    return click.get_current_context().meta.get(_GIVEN, {}).get(name)


def settings_from_options(**overrides: Any) -> Settings:
    """Settings from the environment, the command's options and `overrides` (which win); remembers
    the Redis URL for error messages."""
    from common.settings import Settings

    context = click.get_current_context()
    settings = Settings.from_env(**{**context.meta.get(_GIVEN, {}), **overrides})
    context.meta[_REDIS_URL] = settings.redis_url
    return settings


def redis_url_in_use() -> str:
    """The Redis URL of the current command, once its settings are built ("" before, or outside click)."""
    context = click.get_current_context(silent=True)
    return "" if context is None else str(context.meta.get(_REDIS_URL, ""))


def connection_options(*, many_queues: bool = False) -> Callable[[F], F]:
    """--redis-url and --queue; with `many_queues` (the worker), --queue is repeatable and its
    values are passed to the command as `queues`."""
    if many_queues:
        help = "Queue to serve; repeat for several, in priority order."
        queue = setting_option("queue", "--queue", "-q", dest="queues", multiple=True, help=help)
    else:
        queue = setting_option("queue", "--queue", "-q")
    url = setting_option("redis_url", "--redis-url")

    def apply(func: F) -> F:
        return url(queue(func))

    return apply


def task_modules_option(who_serves: str) -> Callable[[F], F]:
    """--tasks MODULE (repeatable, or DW_TASK_MODULES): modules of @task functions, which `who_serves`
    ("the worker serves")."""
    return click.option(
        "--tasks",
        "task_modules",
        multiple=True,
        envvar=TASK_MODULES_ENV,
        show_envvar=True,
        help=f"Python module whose @task functions {who_serves}; repeatable (the variable: space-separated).",
    )


# The error edge. common.errors is imported once an error comes, not at start: `--help` needs none of it.


@contextlib.contextmanager
def error_edge(prog: str) -> Iterator[None]:
    """Turn what escapes the block into `prog: message` on stderr and its exit code (SystemExit)."""
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise  # click's own (--help, usage errors): click ends them as it does everywhere
    except (Exception, KeyboardInterrupt) as exc:
        _exit_for(prog, exc)
        raise  # not ours to map: a bug, with its traceback


_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})
"""Errors of writing a file or a device (a full disk, an I/O error): never of a connection to Redis."""


def _exit_for(prog: str, exc: BaseException) -> None:
    """Exit as `exc` says (SystemExit); return if it is not an error the edge maps."""
    from common.errors import EXIT_INTERRUPTED, BatchInterrupted, DispatchError

    if isinstance(exc, BrokenPipeError):
        _end_quietly()
    elif isinstance(exc, DispatchError):
        _fail(prog, str(exc), exc.exit_code)
    elif isinstance(exc, KeyboardInterrupt):
        _fail(prog, str(exc) if isinstance(exc, BatchInterrupted) else "interrupted", EXIT_INTERRUPTED)
    elif isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
        from common.errors import EXIT_OUTPUT

        _fail(prog, f"cannot write the output: {exc.strerror or exc}", EXIT_OUTPUT)
    elif isinstance(exc, OSError) or _is_redis_error(exc):
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


def _is_redis_error(exc: BaseException) -> bool:
    """A redis-py error (redis is loaded once a command has used it; if it is not, this is none)."""
    loaded = sys.modules.get("redis")
    return loaded is not None and isinstance(exc, loaded.RedisError)


def _fail(prog: str, message: str, code: int) -> NoReturn:
    click.echo(f"{prog}: {message}", err=True)
    sys.exit(code)


def _end_quietly() -> NoReturn:
    """The reader of stdout went away (`dispatcher ... | head`): stop without a word, as Unix tools do.

    Python's documented recipe: point stdout at /dev/null, so that the flush at exit cannot raise
    again. The exit code is a shell's for a tool killed by SIGPIPE.
    """
    discard_writes(sys.stdout)
    from common.errors import EXIT_BROKEN_PIPE

    sys.exit(EXIT_BROKEN_PIPE)


def discard_writes(stream: Any) -> None:
    """Point `stream`'s file descriptor at /dev/null: whatever is still buffered for it, and any later
    write, goes nowhere instead of raising again (after its reader went away or its disk filled)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
