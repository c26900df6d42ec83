"""The durable option sends its WAITs: on the dispatcher's enqueue (CLI and Session paths) and on the
worker's result writes. Against a Redis without replicas every WAIT times out, which each side reports."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import redis

from common.connection import connect
from common.settings import Settings
from dispatcher.session import Session
from tests.conftest import WorkerFactory, run_cli

DURABLE = {"DW_MIN_REPLICAS": "1", "DW_MIN_REPLICAS_TIMEOUT": "0.05"}


def _waits(client: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_without_the_option_nothing_waits(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    start_worker()
    real_client.config_resetstat()
    done = run_cli("submit", "-", "--json", "--chunk-size", "1", env={"REDIS_URL": redis_url}, stdin="add 1 2\n")
    assert done.returncode == 0, done.stderr
    assert _waits(real_client) == 0


def test_enqueues_and_results_wait_for_replicas(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    start_worker(env=DURABLE)
    real_client.config_resetstat()
    env = {"REDIS_URL": redis_url, **DURABLE}
    done = run_cli("submit", "-", "--json", "--chunk-size", "1", env=env, stdin="add 1 2\nadd 3 4\n")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(line)["result"] for line in done.stdout.splitlines()) == [3, 7]
    assert "chunk jobs enqueued: only 0 of 1 replica(s) confirmed it" in done.stderr, done.stderr
    log = (tmp_path / "worker-0.log").read_text()
    assert "success and results: only 0 of 1 replica(s) confirmed it" in log, log
    assert _waits(real_client) >= 3  # one enqueue, two chunks' results


def test_a_session_call_waits_before_it_reads(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    start_worker()
    settings = Settings(redis_url=redis_url, min_replicas=1, min_replicas_timeout=0.05)
    real_client.config_resetstat()
    with caplog.at_level(logging.WARNING), Session(connect(settings), settings) as session:
        assert session.call("add", 2, 3, timeout=30).value == 5
    assert "chunk jobs enqueued: only 0 of 1 replica(s)" in caplog.text
    assert _waits(real_client) >= 1
