"""The primes example runs end to end (embedded Redis, two workers serving its task module)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_primes_example_agrees_with_one_process() -> None:
    argv = [sys.executable, str(ROOT / "examples" / "primes" / "count_primes.py"), "--local", "2"]
    argv += ["--limit", "3000000", "--pieces", "12"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "216,816 primes" in lines[1]  # pi(3,000,000)
    assert any(line.startswith("RedisExecutor.map: 216,816 primes") and "speed-up x" in line for line in lines)
    assert any(line.startswith("dispatcher submit: 216,816 primes") and "speed-up x" in line for line in lines)
