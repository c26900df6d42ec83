"""Fixtures: fakeredis for unit tests; a real redis-server and real worker processes for the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from common import keys
from common.catalogue import Catalogue, default_catalogue
from common.routing import BUILTIN_TASKS
from common.settings import Settings
from dispatcher.local import EmbeddedRedis, spawn, stop, wait_for_workers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_client() -> Iterator[fakeredis.FakeRedis]:
    """A fresh in-memory Redis (unit tests)."""
    client = fakeredis.FakeRedis()
    yield client
    client.flushall()


@pytest.fixture
def fake_settings() -> Settings:
    return Settings.from_env({}, redis_url="redis://fake:6379/0", heartbeat_interval=0.2, heartbeat_ttl=1)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server for the test session, on a free port."""
    server = EmbeddedRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The real server's URL, flushed before and after each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture
def real_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start real `worker` processes; every one is stopped (SIGTERM, then SIGKILL) after the test."""
    processes: list[subprocess.Popen[bytes]] = []
    client = redis.Redis.from_url(redis_url)

    def start(*args: str, wait: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full_env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DW_HEARTBEAT_INTERVAL": "0.5",
            "DW_HEARTBEAT_TTL": "2",
            **(env or {}),
        }
        before = client.scard(keys.RQ_WORKERS)
        with (tmp_path / f"worker-{len(processes)}.log").open("wb") as log:
            process = spawn([sys.executable, "-m", "worker", *args], env=full_env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        if wait:
            wait_for_workers(client, before + 1, timeout=30)
        return process

    yield start
    for process in processes:
        stop(process, grace=10)
    client.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `dispatcher` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def current_job(client: redis.Redis, worker: str) -> str | None:
    """The job id a worker reports it is running, if any: RQ 2 names it in the worker's hash, RQ 3 in
    the worker's set of executions (`job id:execution id`)."""
    executions_key = keys.rq_worker_executions_key(worker)
    if executions_key is None:
        raw = client.hget(keys.rq_worker_key(worker), "current_job")
        return raw.decode() if raw else None  # type: ignore[union-attr]
    members = sorted(client.smembers(executions_key))  # type: ignore[arg-type]
    return members[0].decode().rpartition(":")[0] if members else None


def builtin_catalogue() -> Catalogue:
    """The catalogue of a plain `worker`: the built-in tasks only (test modules that this process
    imported may have added user tasks to the default catalogue, which gives a worker more queues)."""
    catalogue = Catalogue()
    for definition in default_catalogue:
        if definition.name in BUILTIN_TASKS:
            catalogue.register(definition.func, name=definition.name)
            if definition.coroutine is not None and definition.coroutine is not definition.func:
                catalogue.add_coroutine(definition.name, definition.coroutine)
    return catalogue
