"""Alive means registered, through a Redis restart without persistence: idle and busy workers put
their whole registration back within one heartbeat interval of Redis answering again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.integration.test_worker_liveness import registration_problems
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    RestartableRedis,
    current_job,
    wait_outage_noticed,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability

INTERVAL = float(FAST_RECOVERY["DW_HEARTBEAT_INTERVAL"])
MARGIN = 2.0
"""Slack on top of one heartbeat interval (process scheduling, a reconnect's back-off)."""


def test_workers_register_again_after_redis_restarts_empty(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()  # no append-only file: a restart loses everything
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, FAST_RECOVERY)
    names = ["calm", "busy"]
    workers = [procs.worker("--name", name) for name in names]
    wait_until(lambda: not any(registration_problems(client, n) for n in names), 30, "both workers")
    batch = write_tasks(tmp_path / "slow.txt", ["sleep 30"])
    procs.run("submit", str(batch), "--no-wait")
    wait_until(lambda: any(current_job(client, n) for n in names), 30, "a worker to be busy")

    server.crash()
    wait_outage_noticed(procs, workers)
    server.start()

    problems = lambda: [p for n in names for p in registration_problems(client, n)]  # noqa: E731
    wait_until(lambda: not problems(), INTERVAL + MARGIN, "both registrations to be back")
    done = procs.run("submit", "-", "--json", "--timeout", "60", input_text="add 1 2\n")
    assert done.returncode == 0, done.stderr
    assert '"result":3' in done.stdout
