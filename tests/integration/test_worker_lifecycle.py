"""Workers say what they do: a start line and a stop line with its reason, and a bounded wait for Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common import keys
from common.routing import BUILTIN_TASKS
from dispatcher.local import EmbeddedRedis, spawn, stop
from tests.conftest import current_job
from tests.support import HANG_GUARD, wait_until

pytestmark = pytest.mark.integration

PASSWORD = "lifecycle-s3cret"


@pytest.fixture
def secured_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    client = redis.Redis(port=server.port)
    client.config_set("requirepass", PASSWORD)  # after start: EmbeddedRedis checks it with a plain PING
    client.close()
    yield server
    server.stop()


def worker_env(url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": url,
        "PYTHONUNBUFFERED": "1",
        "DW_HEARTBEAT_INTERVAL": "0.5",
        "DW_HEARTBEAT_TTL": "2",
        **extra,
    }


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A worker whose stderr goes to `log` (stdout is discarded: the lines must be on stderr)."""
    with log.open("wb") as err:
        return spawn([sys.executable, "-m", "worker", *args], env=env, stdout=subprocess.DEVNULL, stderr=err)


def registered(url: str, name: str) -> bool:
    client = redis.Redis.from_url(url, password=PASSWORD)
    try:
        return bool(client.sismember(keys.RQ_WORKERS, keys.rq_worker_key(name)))
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def test_start_and_stop_lines_on_stderr(secured_redis: EmbeddedRedis, tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{secured_redis.port}/0"
    log = tmp_path / "worker.err"
    worker = start(["--name", "talker", "-q", "tasks", "-q", "urgent"], worker_env(url), log)
    try:
        wait_until(lambda: "started" in log.read_text(), HANG_GUARD, "the start line")
        wait_until(lambda: registered(url, "talker"), HANG_GUARD, "the worker to register")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(HANG_GUARD) == 0
    finally:
        stop(worker)
    text = log.read_text()
    start_line = next(line for line in text.splitlines() if "worker talker started" in line)
    offered = len(BUILTIN_TASKS)  # a plain worker: the built-in tasks (this process may have imported user tasks)
    assert "tasks,urgent" in start_line and f"{offered} tasks offered" in start_line, start_line
    assert f"redis://:***@127.0.0.1:{secured_redis.port}/0" in start_line, start_line
    assert PASSWORD not in text
    stop_line = next(line for line in text.splitlines() if "worker talker stopped" in line)
    assert "SIGTERM" in stop_line, stop_line


def test_burst_worker_says_it_is_done(secured_redis: EmbeddedRedis, tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{secured_redis.port}/0"
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--name", "sprinter", "--burst"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=worker_env(url),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "worker sprinter started" in done.stderr, done.stderr
    stop_line = next(line for line in done.stderr.splitlines() if "worker sprinter stopped" in line)
    assert "burst" in stop_line and "queues empty" in stop_line, stop_line


def test_worker_waits_for_redis_that_starts_later(tmp_path: Path) -> None:
    server = EmbeddedRedis()  # its port is chosen, nothing listens on it yet
    log = tmp_path / "early.err"
    worker = start(["--name", "early", "--wait-for-redis", "60"], worker_env(server.url), log)
    try:
        wait_until(lambda: "waiting for Redis" in log.read_text(), HANG_GUARD, "the worker to say it waits")
        assert worker.poll() is None, log.read_text()
        server.start()
        client = redis.Redis.from_url(server.url)
        wait_until(
            lambda: client.sismember(keys.RQ_WORKERS, keys.rq_worker_key("early")), HANG_GUARD, "the worker to register"
        )
        client.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(HANG_GUARD) == 0, log.read_text()
    finally:
        stop(worker)
        server.stop()
    assert "worker early started" in log.read_text()


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [(["--wait-for-redis", "1"], {}), ([], {"DW_WAIT_FOR_REDIS": "0"})],
    ids=["option", "env-zero"],
)
def test_worker_gives_up_on_absent_redis_with_exit_3(args: list[str], extra_env: dict[str, str]) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--name", "lonely", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=worker_env(url, **extra_env),
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "cannot use Redis at redis://:***@127.0.0.1:1/0" in done.stderr, done.stderr
    assert "--wait-for-redis" in done.stderr, done.stderr  # says how to wait longer
    assert PASSWORD not in done.stderr


def test_a_second_signal_is_a_cold_shutdown_and_says_so(secured_redis: EmbeddedRedis, tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{secured_redis.port}/0"
    client = redis.Redis.from_url(url)
    log = tmp_path / "cold.err"
    worker = start(["--name", "cold"], worker_env(url), log)
    try:
        wait_until(lambda: registered(url, "cold"), HANG_GUARD, "the worker to register")
        batch = tmp_path / "slow.txt"
        batch.write_text("sleep 30\n")
        submitted = subprocess.run(
            [sys.executable, "-m", "dispatcher", "submit", str(batch), "--no-wait"],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            env=worker_env(url),
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr
        wait_until(lambda: current_job(client, "cold"), HANG_GUARD, "the worker to take the chunk")
        worker.send_signal(signal.SIGTERM)
        wait_until(
            lambda: client.hget(keys.rq_worker_key("cold"), "shutdown_requested_date"), HANG_GUARD, "the warm stop"
        )
        time.sleep(1.1)  # RQ takes a repeat within a second for the same request (a pool and a terminal both signal)
        worker.send_signal(signal.SIGTERM)
        worker.wait(HANG_GUARD)
    finally:
        stop(worker)
        client.close()
    stop_line = next(line for line in log.read_text().splitlines() if "worker cold stopped" in line)
    assert "cold shutdown" in stop_line, stop_line
