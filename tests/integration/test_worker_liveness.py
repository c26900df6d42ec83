"""Alive means registered: a worker's RQ record, set memberships and advertised catalogue hold while
its process lives, busy or idle, whatever the chunk pattern, and come back if removed from outside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from common import keys
from tests.conftest import WorkerFactory, current_job, run_cli
from tests.support import wait_until

pytestmark = pytest.mark.integration

HEARTBEAT_INTERVAL = 0.5
"""The workers' DW_HEARTBEAT_INTERVAL in these tests (the start_worker fixture's)."""
HEARTBEAT_TTL = 2
"""Their DW_HEARTBEAT_TTL: a chunk's start sets the worker record to expire after this."""
DEQUEUE_BLOCK = 15
"""An idle RQ worker blocks this long per dequeue (worker TTL - 15), and heartbeats between blocks."""
WORKER_TTL = 30
"""max(30, 3 * DW_HEARTBEAT_TTL): RQ's worker TTL, the base of `worker --check`'s staleness limit."""
RESTORE_MARGIN = 2.0
"""Slack on top of one heartbeat interval for a restored record to be seen (process scheduling)."""

RQ_BIRTH_FIELDS = ("birth", "last_heartbeat", "queues", "pid", "hostname", "ip_address", "version", "python_version")
"""The fields RQ's register_birth writes (Worker.serialize)."""
ADVERTISED_FIELDS = ("dw_host", "dw_pid", "dw_slots", "dw_tasks")


def registration_problems(client: redis.Redis, name: str, queue: str = "tasks") -> list[str]:
    """What is missing from a worker's registration (empty: all of it is there)."""
    key = keys.rq_worker_key(name)
    fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}  # type: ignore[union-attr]
    problems = [
        f"{key} has no field {field}"
        for field in (*RQ_BIRTH_FIELDS, *ADVERTISED_FIELDS, "state")
        if not fields.get(field)
    ]
    if fields.get("dw_tasks") and '"add"' not in fields["dw_tasks"]:
        problems.append(f"{key} does not advertise add: {fields['dw_tasks']}")
    if "death" in fields:
        problems.append(f"{key} is marked dead")
    for members in (keys.RQ_WORKERS, keys.rq_workers_by_queue_key(queue)):
        if not client.sismember(members, key):
            problems.append(f"{key} is not in {members}")
    return problems


def worker_check() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        check=False,
    )


def assert_alive(client: redis.Redis, names: list[str], when: str, probe: bool = False) -> None:
    problems = [p for name in names for p in registration_problems(client, name)]
    assert not problems, f"{when}: {problems}"
    if probe:
        checked = worker_check()
        assert checked.returncode == 0, f"{when}: worker --check: {checked.stdout}{checked.stderr}"
        assert all(name in checked.stdout for name in names), checked.stdout


def idle_until(started: float, seconds: float) -> None:
    """Leave the workers alone until `seconds` after `started` (the idling is the scenario itself)."""
    time.sleep(max(0.0, started + seconds - time.monotonic()))


def submit(tmp_path: Path, label: str, lines: list[str], chunk_size: int) -> None:
    batch = tmp_path / f"{label}.txt"
    batch.write_text("".join(line + "\n" for line in lines))
    done = run_cli("submit", str(batch), "--json", "--chunk-size", str(chunk_size))
    assert done.returncode == 0, f"{label}: {done.stderr[-2000:]}"
    assert done.stdout.count('"ok":true') == len(lines), f"{label}: {done.stderr[-2000:]}"


def test_idle_workers_stay_registered_after_any_chunk_pattern(
    redis_url: str,
    real_client: redis.Redis,
    start_worker: WorkerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    began = time.monotonic()
    names = ["live-a", "live-b"]
    for name in names:
        start_worker("--name", name)
    adds = [f"add {i} {i}" for i in range(4000)]
    patterns = [
        ("many tiny chunks", adds, 10),
        ("one big chunk", adds, len(adds)),
        ("chunk size 1", ["sleep 0.2"] * 20, 1),
    ]
    for label, lines, chunk_size in patterns:
        submit(tmp_path, label.replace(" ", "-"), lines, chunk_size)
        ended = time.monotonic()
        # Past the job-start expiry (one heartbeat TTL), then past three of them.
        for after in (HEARTBEAT_TTL + 1.0, 3 * HEARTBEAT_TTL + 0.5):
            idle_until(ended, after)
            assert_alive(real_client, names, f"{label}, idle {after:g} s", probe=after > HEARTBEAT_TTL + 1.0)
        submit(tmp_path, f"{label.replace(' ', '-')}-then-add", ["add 1 2"], 1)

    # A long idle after the last (tiny) batch: past two blocking dequeues (each ends with RQ's own
    # heartbeat) and past the worker TTL that `worker --check`'s staleness limit is built on.
    ended = time.monotonic()
    for after in (DEQUEUE_BLOCK - 1.0, DEQUEUE_BLOCK + 2.0, 2 * DEQUEUE_BLOCK + 1.0, WORKER_TTL + 4.0):
        idle_until(ended, after)
        assert_alive(real_client, names, f"long idle, {after:g} s", probe=True)
    submit(tmp_path, "after-long-idle", ["add 1 2", "multiply 6 7"], 1)
    duration = time.monotonic() - began
    print(f"idle-liveness test duration: {duration:.1f} s")


def test_removed_registration_is_restored_within_one_interval(
    redis_url: str,
    real_client: redis.Redis,
    start_worker: WorkerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    start_worker("--name", "phoenix")
    key = keys.rq_worker_key("phoenix")
    # Registered is not yet whole: RQ writes the worker's state just after its birth record.
    wait_until(lambda: not registration_problems(real_client, "phoenix"), 30, "phoenix's whole registration")
    assert_alive(real_client, ["phoenix"], "started")

    def restored(how: str) -> None:
        wait_until(
            lambda: not registration_problems(real_client, "phoenix"),
            HEARTBEAT_INTERVAL + RESTORE_MARGIN,
            f"the registration to come back after {how}",
            interval=0.02,
        )

    with real_client.pipeline() as pipe:  # another process's clean-up
        pipe.delete(key).srem(keys.RQ_WORKERS, key).srem(keys.rq_workers_by_queue_key("tasks"), key).execute()
    restored("DEL and SREM")

    real_client.flushall()  # a flush, or Redis restarted without persistence
    restored("FLUSHALL")
    submit(tmp_path, "after-flush", ["add 1 2"], 1)

    with real_client.pipeline() as pipe:  # a record that came back holding only RQ's heartbeat
        pipe.delete(key).hset(key, "last_heartbeat", "2026-01-01T00:00:00.000000Z").expire(key, 90).execute()
    restored("a stripped record")

    # Busy: the record goes while a chunk runs, and is back before the chunk ends.
    batch = tmp_path / "slow.txt"
    batch.write_text("sleep 3\n")
    dispatcher = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "submit", str(batch), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: current_job(real_client, "phoenix"), 30, "phoenix to take the chunk")
        real_client.delete(key)
        real_client.srem(keys.RQ_WORKERS, key)
        restored("DEL while busy")
        out, err = dispatcher.communicate(timeout=60)
    finally:
        if dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait()
    assert dispatcher.returncode == 0, err
    assert '"ok":true' in out
