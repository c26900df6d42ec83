"""`worker --check` against a real redis-server and a real worker process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dispatcher.local import stop
from tests.conftest import WorkerFactory

pytestmark = pytest.mark.integration


def check(redis_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_URL": redis_url},
        check=False,
    )


def test_check_follows_a_real_worker_through_its_life(redis_url: str, start_worker: WorkerFactory) -> None:
    before = check(redis_url)
    assert before.returncode == 1, before.stdout + before.stderr

    worker = start_worker("--name", "probe-me")
    alive = check(redis_url)
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert "probe-me" in alive.stdout

    stop(worker, grace=30)
    assert worker.returncode == 0
    after = check(redis_url)
    assert after.returncode == 1, after.stdout + after.stderr


def test_plain_worker_still_starts_a_worker(redis_url: str, start_worker: WorkerFactory) -> None:
    worker = start_worker("--redis-url", redis_url)  # waits until it has registered in Redis
    assert worker.poll() is None
