"""Both CLIs build their options of settings from the one table (common.settings.SETTINGS): each
option's variable, default and help are the table's, shown by `--help`, and every environment
variable is named once in the code."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import click
import pytest

from common.cli import TASK_MODULES_ENV
from common.settings import SETTINGS, Settings
from dispatcher.cli import main as dispatcher_main
from tests.clirunner import invoke
from worker.cli import main as worker_main

ROOT = Path(__file__).resolve().parents[2]
ROW_OF_ENV = {row.env: row for row in SETTINGS.values()}


def commands() -> list[click.Command]:
    assert isinstance(dispatcher_main, click.Group)
    return [worker_main, *dispatcher_main.commands.values()]


def setting_options() -> list[tuple[click.Command, click.Option]]:
    found = [
        (command, param)
        for command in commands()
        for param in command.params
        if isinstance(param, click.Option) and param.envvar in ROW_OF_ENV
    ]
    assert len(found) >= 15  # the connection options of 5 commands, the limits, the TTLs...
    return found


def test_each_option_of_a_setting_takes_the_table_s_default_and_help() -> None:
    for command, option in setting_options():
        row = ROW_OF_ENV[str(option.envvar)]
        default = (row.default,) if option.multiple else row.default
        assert option.default == default, (command.name, option.name)
        assert option.show_default and option.show_envvar, (command.name, option.name)
        assert option.help == row.help or row.name == "queue", (command.name, option.name)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["submit", "--help"], ["DW_RESULT_TTL; default: 86400", "REDIS_URL; default: redis://localhost:6379/0"]),
        (["status", "--help"], ["env var: DW_QUEUE; default: tasks"]),
        (["run", "--help"], ["DW_MAX_BATCH_TASKS; default: 10000000", "DW_TASK_MODULES"]),
    ],
)
def test_dispatcher_help_shows_variables_and_defaults(args: list[str], shown: list[str]) -> None:
    done = invoke(dispatcher_main, args, env={"COLUMNS": "400"})
    text = " ".join(done.stdout.split())
    assert done.exit_code == 0 and all(part in text for part in shown), text


def test_worker_help_shows_variables_and_defaults() -> None:
    done = invoke(worker_main, ["--help"], env={"COLUMNS": "400"})
    text = " ".join(done.stdout.split())
    for part in ["DW_TASK_TIMEOUT; default: 60.0", "DW_WAIT_FOR_REDIS; default: 30.0", "DW_QUEUE; default: tasks"]:
        assert part in text


def string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


RQ_OWN_NAMES = {("rq_settings.py", "REDIS_URL")}
"""Strings that spell one of our variables but name something else: the setting of RQ's CLI."""


def test_every_environment_variable_is_named_once_in_the_code() -> None:
    names = [*ROW_OF_ENV, TASK_MODULES_ENV, "DW_CONCURRENCY", "DW_THREADS", "DW_ASYNC_SLOTS", "DW_WORKER_NAME"]
    counts = dict.fromkeys(names, 0)
    for package in ("common", "dispatcher", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            for text in string_constants(path):
                if re.fullmatch(r"REDIS_URL|DW_[A-Z0-9_]+", text) and (path.name, text) not in RQ_OWN_NAMES:
                    counts[text] = counts.get(text, 0) + 1
    assert "DW_RQ_FAST_PATH" in counts  # the walk finds variables that are not in the list above
    assert counts == dict.fromkeys(counts, 1)  # any variable, listed or not, is named exactly once


def test_the_readme_lists_every_variable_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for row in SETTINGS.values():
        line = next((line for line in readme.splitlines() if line.startswith(f"| `{row.env}` |")), None)
        assert line is not None, row.env
        default = line.split("|")[3].strip().strip("`")
        expected = row.default if isinstance(row.default, str) else float(default.replace(",", ""))
        assert default == expected or row.default == expected, (row.env, default)


def test_settings_has_a_field_of_the_table_s_type_for_each_row_in_its_order() -> None:
    fields = dataclasses.fields(Settings)
    assert [field.name for field in fields] == list(SETTINGS)
    for field in fields:
        row = SETTINGS[field.name]
        assert (field.type, field.default) == (row.kind.__name__, row.default), field.name
    assert Settings.from_env({}) == Settings()
