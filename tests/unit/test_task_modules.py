"""Task modules named by `--tasks`: one that registers nothing is reported; a name clash names both sides."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common import default_catalogue
from common.errors import ConfigurationError
from worker.runtime import import_task_modules

_counter = itertools.count()

ModuleWriter = Callable[[str], str]


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleWriter]:
    """Write a module with a name no other test uses to tmp_path; the default catalogue is restored after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(default_catalogue, "_tasks", dict(default_catalogue._tasks))
    written: list[str] = []

    def write(source: str) -> str:
        name = f"user_tasks_{next(_counter)}_{tmp_path.name}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_a_module_that_registers_no_task_is_reported(write_module: ModuleWriter) -> None:
    empty = write_module("def helper(x):\n    return x\n")
    serving = write_module("from common import task\n\n@task(name='mine.one')\ndef one() -> int:\n    return 1\n")
    assert import_task_modules([empty, serving]) == [empty]
    assert "mine.one" in default_catalogue


def test_a_module_whose_tasks_an_earlier_module_already_imported_is_not_reported(write_module: ModuleWriter) -> None:
    inner = write_module("from common import task\n\n@task(name='mine.inner')\ndef inner() -> int:\n    return 1\n")
    outer = write_module(f"import {inner}  # registers its tasks\n")
    assert import_task_modules([outer, inner]) == []


def test_naming_a_module_twice_imports_it_once_without_a_report(write_module: ModuleWriter) -> None:
    serving = write_module("from common import task\n\n@task(name='mine.twice')\ndef twice() -> int:\n    return 2\n")
    assert import_task_modules([serving, serving]) == []


def test_a_name_clash_between_two_modules_names_both_and_the_task(write_module: ModuleWriter) -> None:
    first = write_module("from common import task\n\n@task(name='shared.name')\ndef a() -> int:\n    return 1\n")
    second = write_module("from common import task\n\n@task(name='shared.name')\ndef b() -> int:\n    return 2\n")
    with pytest.raises(ConfigurationError) as caught:
        import_task_modules([first, second])
    message = str(caught.value)
    assert "'shared.name'" in message
    assert f"{first}.a" in message
    assert f"{second}.b" in message


def test_a_name_clash_with_a_builtin_task_names_the_builtin_module(write_module: ModuleWriter) -> None:
    clashing = write_module("from common import task\n\n@task\ndef add(a: int, b: int) -> int:\n    return a - b\n")
    with pytest.raises(ConfigurationError) as caught:
        import_task_modules([clashing])
    message = str(caught.value)
    assert "'add'" in message
    assert "common.builtin_tasks.add" in message
    assert f"{clashing}.add" in message


def test_a_module_that_cannot_be_imported_is_named(write_module: ModuleWriter) -> None:
    broken = write_module("import no_such_module_anywhere\n")
    with pytest.raises(ConfigurationError, match=f"cannot import task module '{broken}'"):
        import_task_modules([broken])
