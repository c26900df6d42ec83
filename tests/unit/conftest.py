"""Unit-test fixtures (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from worker import runtime


@pytest.fixture(autouse=True)
def _reset_worker_runtime() -> Iterator[None]:
    """Forget the worker runtime a test installed (worker.runtime.configure), so no later test runs
    its chunks with that test's catalogue and settings."""
    yield
    runtime.reset()
