"""The worker runtime (worker.runtime): installed once per process, reset between tests, and what
it hands the slots (a frozen context, never itself)."""

from __future__ import annotations

import dataclasses

import pytest

from common.catalogue import Catalogue, default_catalogue
from common.settings import Settings
from worker import runtime
from worker.runtime import Runtime
from worker.slots import SlotContext


def test_configure_installs_the_runtime_of_this_process() -> None:
    mine = Runtime(Settings.from_env({}), Catalogue(), "configured-by-a-test")
    runtime.configure(mine)
    assert runtime.current() is mine


def test_a_runtime_configured_by_an_earlier_test_is_gone() -> None:
    # The previous test installed one; tests/unit/conftest.py resets it after each test.
    assert runtime._current is None
    assert runtime.current().name == "worker"
    assert runtime.current().catalogue is default_catalogue


def test_reset_forgets_the_installed_runtime() -> None:
    runtime.configure(Runtime(Settings.from_env({}), Catalogue(), "a"))
    runtime.reset()
    assert runtime.current().name == "worker"


def test_the_slots_get_a_frozen_context_with_what_they_need() -> None:
    catalogue, settings = Catalogue(), Settings.from_env({})
    context = Runtime(settings, catalogue, "w7", threads=4).context
    assert context == SlotContext(catalogue, settings, "w7")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.name = "other"  # type: ignore[misc]
