"""Helpers every kind of test shares: waiting for a condition, and knowing whether we run on CI."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NoReturn

import pytest

HANG_GUARD = 60.0
"""Far above any designed wait; only there so that a broken recovery fails instead of hanging."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail the test after
    `timeout` seconds. The timeout only guards against a hang: no test asserts how long a wait took."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def in_ci() -> bool:
    """True on the CI runner (CI=true, 1 or yes), where a test that cannot run must fail rather than skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; fail on CI, where a missing prerequisite is a failure, never a silent skip."""
    if in_ci():
        pytest.fail(f"required on CI: {reason}")
    pytest.skip(reason)
