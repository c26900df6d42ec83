"""Run a click CLI in-process with its stdout and stderr apart, on every click we support."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import click
from click.testing import CliRunner, Result

_APART: dict[str, Any] = (
    {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters else {}
)
"""click 8.1 mixes stderr into stdout unless told not to; 8.2 and later keep them apart."""


def invoke(command: click.Command, args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Result:
    """`command args` in this process, as `prog_name` = the command's name; never raises."""
    return CliRunner(**_APART).invoke(command, list(args), env=env, prog_name=command.name, catch_exceptions=True)
