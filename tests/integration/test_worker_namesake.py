"""A worker started under the name of a dead one starts at once; a live worker's name is never taken."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common import keys
from dispatcher.local import spawn, stop
from tests.conftest import WorkerFactory
from tests.integration.test_worker_liveness import registration_problems
from tests.support import HANG_GUARD, wait_until

pytestmark = pytest.mark.integration

REFUSAL = "There exists an active worker named"
"""RQ's message when a name is taken."""


def child_pid(client: redis.Redis, name: str) -> int:
    return int(client.hget(keys.rq_worker_key(name), "dw_pid"))  # type: ignore[arg-type]


def kill_worker(client: redis.Redis, supervisor: subprocess.Popen[bytes], name: str) -> int:
    """SIGKILL a worker's supervisor (so it starts no replacement) and its worker process."""
    pid = child_pid(client, name)
    supervisor.kill()
    supervisor.wait()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10, f"process {pid} to die")
    return pid


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def start_replacement(redis_url: str, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{name}-replacement.log"
    env = {**os.environ, "REDIS_URL": redis_url, "DW_HEARTBEAT_INTERVAL": "0.5", "DW_HEARTBEAT_TTL": "2"}
    with log.open("wb") as out:
        process = spawn([sys.executable, "-m", "worker", "--name", name], env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def registered_by_other_than(client: redis.Redis, name: str, old_pid: int) -> bool:
    raw = client.hget(keys.rq_worker_key(name), "dw_pid")
    return raw is not None and int(raw) != old_pid and not registration_problems(client, name)  # type: ignore[arg-type]


@pytest.mark.parametrize("stripped", [False, True], ids=["full-record", "stripped-record"])
def test_replacement_of_a_killed_worker_starts_at_once(
    stripped: bool, redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    first = start_worker("--name", "phoenix")
    old_pid = kill_worker(real_client, first, "phoenix")
    key = keys.rq_worker_key("phoenix")
    if stripped:  # what an expired record looked like once RQ's next heartbeat wrote into it
        stale = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=30)
        stamp = stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with real_client.pipeline() as pipe:
            pipe.delete(key).hset(key, "last_heartbeat", stamp).expire(key, 90).execute()
    assert real_client.exists(key)

    replacement, log = start_replacement(redis_url, tmp_path, "phoenix")
    try:
        wait_until(
            lambda: (
                registered_by_other_than(real_client, "phoenix", old_pid)
                or replacement.poll() is not None
                or REFUSAL in log.read_text(errors="replace")
            ),
            HANG_GUARD,
            "the replacement to register",
        )
        text = log.read_text(errors="replace")
        assert REFUSAL not in text, text
        assert registered_by_other_than(real_client, "phoenix", old_pid), text
    finally:
        stop(replacement, grace=10)


def test_a_live_workers_name_is_never_taken_even_when_its_record_is_stripped(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    start_worker("--name", "keeper")
    keeper_pid = child_pid(real_client, "keeper")
    key = keys.rq_worker_key("keeper")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with real_client.pipeline() as pipe:
        pipe.delete(key).hset(key, "last_heartbeat", now).expire(key, 90).execute()
    intruder = subprocess.run(
        [sys.executable, "-m", "worker", "--name", "keeper", "--burst"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    assert intruder.returncode == 1, intruder.stderr
    assert REFUSAL in intruder.stderr, intruder.stderr
    assert "worker keeper stopped" in intruder.stderr and "error" in intruder.stderr, intruder.stderr
    wait_until(lambda: not registration_problems(real_client, "keeper"), 5, "keeper's registration")
    assert child_pid(real_client, "keeper") == keeper_pid
