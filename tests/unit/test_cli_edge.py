"""The one error edge of both CLIs (common.cli): each error becomes its message and exit code."""

from __future__ import annotations

import errno

import click
import pytest
import redis

from common import errors
from common.cli import EdgeCommand, EdgeGroup
from common.errors import DispatchError
from tests.clirunner import invoke


def group_raising(error: BaseException) -> click.Group:
    @click.group("prog", cls=EdgeGroup)
    def main() -> None:
        pass

    @main.command()
    def fail() -> None:
        raise error

    return main


def command_raising(error: BaseException) -> click.Command:
    @click.command("solo", cls=EdgeCommand)
    def main() -> None:
        raise error

    return main


DISPATCH_ERRORS = sorted(
    (getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)),
    key=lambda cls: cls.__name__,
)
"""Every class of the error tree that ends a command."""
EXPECTED_CODES = {
    "ConfigurationError": 2,
    "DispatchError": 2,
    "InputError": 2,
    "TaskNotOffered": 2,
    "LimitExceeded": 2,
    "MalformedInput": 2,
    "BatchNotFound": 2,
    "RedisUnavailable": 3,
    "RedisOutOfMemory": 3,
    "WaitTimeout": 4,
    "BatchIncomplete": 5,
    "OutputFailed": 74,
}
"""The exit code of each, as README's table of exit codes gives it."""


def test_the_expected_codes_cover_every_error_that_ends_a_command() -> None:
    ending = {cls.__name__ for cls in DISPATCH_ERRORS if issubclass(cls, DispatchError)}
    assert ending == set(EXPECTED_CODES)


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
@pytest.mark.parametrize("make", [group_raising, command_raising], ids=["group", "command"])
def test_a_dispatch_error_becomes_its_message_and_exit_code(name: str, make: object) -> None:
    error = getattr(errors, name)(f"something about {name}")
    result = invoke(make(error), ["fail"] if make is group_raising else [])  # type: ignore[operator]
    assert result.exit_code == EXPECTED_CODES[name]
    prog = "prog" if make is group_raising else "solo"
    assert result.stderr == f"{prog}: something about {name}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("make", [group_raising, command_raising], ids=["group", "command"])
def test_ctrl_c_exits_130(make: object) -> None:
    args = ["fail"] if make is group_raising else []
    plain = invoke(make(KeyboardInterrupt()), args)  # type: ignore[operator]
    assert plain.exit_code == 130 and plain.stderr.endswith(": interrupted\n")
    told = invoke(make(errors.BatchInterrupted("interrupted; batch b1 goes on")), args)  # type: ignore[operator]
    assert told.exit_code == 130 and told.stderr.endswith(": interrupted; batch b1 goes on\n")


@pytest.mark.parametrize("make", [group_raising, command_raising], ids=["group", "command"])
def test_a_closed_stdout_exits_141_without_a_word(make: object) -> None:
    result = invoke(make(BrokenPipeError()), ["fail"] if make is group_raising else [])  # type: ignore[operator]
    assert result.exit_code == 141 and result.stderr == ""


@pytest.mark.parametrize(
    "error", [redis.ConnectionError("Connection refused"), ConnectionRefusedError(111, "Connection refused")]
)
def test_a_redis_or_network_error_that_escaped_is_described_and_exits_3(error: Exception) -> None:
    result = invoke(group_raising(error), ["fail"])
    assert result.exit_code == 3
    assert result.stderr.startswith("prog: ") and "Connection refused" in result.stderr


def test_a_full_disk_under_our_output_exits_74_not_as_a_redis_error() -> None:
    result = invoke(group_raising(OSError(errno.ENOSPC, "No space left on device")), ["fail"])
    assert result.exit_code == 74
    assert result.stderr == "prog: cannot write the output: No space left on device\n"


def test_a_task_error_is_not_an_exit_code_it_stays_a_bug() -> None:
    result = invoke(group_raising(errors.UnknownTask("nosuch")), ["fail"])
    assert isinstance(result.exception, errors.UnknownTask)
    assert result.stderr == ""


def test_anything_else_keeps_its_traceback() -> None:
    result = invoke(group_raising(RuntimeError("a bug")), ["fail"])
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1


def test_usage_errors_stay_click_s_exit_2() -> None:
    result = invoke(group_raising(RuntimeError("never")), ["fail", "--nosuch"])
    assert result.exit_code == 2 and "No such option" in result.stderr
