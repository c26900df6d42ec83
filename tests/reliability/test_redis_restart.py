"""Guarantee 4: Redis restarted mid-batch. With the append-only file nothing is lost and every process
reconnects by itself; without it the dispatcher reports what was lost instead of hanging."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    RestartableRedis,
    assert_exactly_once,
    live_worker_names,
    parse_json_results,
    wait_outage_noticed,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability

AOF = ("--appendonly", "yes", "--appendfsync", "always")
OUTAGE_SECONDS = 4.0
"""How long Redis stays down: past the first steps of every reconnect back-off."""


def test_restart_with_aof_loses_nothing(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis(*AOF)
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, FAST_RECOVERY)
    busy = [procs.worker("--name", f"busy-{i}") for i in range(2)]
    idle = procs.worker("--name", "idle", "--queue", "spare")
    wait_until(lambda: len(live_worker_names(client)) == 3, 30, "3 workers")
    total = 80
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.1 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", "5")
    wait_until(lambda: client.keys("dw:batch:*:results"), 30, "the first results")

    server.crash()  # SIGKILL: with appendfsync always, every acknowledged write is on disk
    crashed = time.monotonic()
    wait_outage_noticed(procs, [*busy, idle])
    time.sleep(max(0.0, crashed + OUTAGE_SECONDS - time.monotonic()))  # the outage's length is the scenario
    server.start()

    assert dispatcher.wait(120) == 0, procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))
    by_index = assert_exactly_once(records, total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items()), [r for r in records if not r["ok"]][:3]
    for worker in [*busy, idle]:
        assert worker.poll() is None, procs.log(worker)
        log = procs.log(worker)
        assert "Redis is back" in log or "could not connect to Redis" in log, log
        assert "exited with" not in log  # reconnected by itself, not replaced by its supervisor

    # The worker that was idle through the outage serves again.
    spare = procs.run(
        "submit", "-", "--json", "--no-check", "--queue", "spare", "--timeout", "60", input_text="add 1 2\n"
    )
    assert spare.returncode == 0, spare.stderr
    assert parse_json_results(spare.stdout)[0]["worker"] == "idle"
    client.close()


def test_restart_without_persistence_reports_lost_tasks(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()  # no append-only file, no snapshots: a restart empties it
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, FAST_RECOVERY)
    worker = procs.worker("--name", "solo")
    wait_until(lambda: live_worker_names(client), 30, "the worker")
    total = 40
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.2 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", "2")
    wait_until(lambda: client.keys("dw:batch:*:results"), 30, "the first results")

    server.crash()
    wait_outage_noticed(procs, [worker])
    server.start()

    assert dispatcher.wait(120) == 1, procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))
    by_index = assert_exactly_once(records, total)
    lost = [r for r in by_index.values() if not r["ok"]]
    assert lost, "the restart lost queued chunks, and the dispatcher must say so"
    assert {r["error"]["type"] for r in lost} == {"TaskLost"}
    assert "restarted without persistence" in lost[0]["error"]["message"]
    assert all(r["result"] == r["index"] for r in by_index.values() if r["ok"])
    assert worker.poll() is None, procs.log(worker)
    client.close()


def test_waiting_dispatcher_gives_up_after_the_outage_grace(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, {**FAST_RECOVERY, "DW_OUTAGE_GRACE": "3"})
    batch = write_tasks(tmp_path / "batch.txt", ["add 1 2"])  # no worker: the dispatcher just waits
    dispatcher = procs.dispatcher("submit", str(batch), "--no-check")
    found = wait_until(lambda: re.search(r"batch (\w+): submitting", procs.log(dispatcher)), 30, "the batch id")
    batch_key = keys.batch_key(found.group(1))
    # The whole input is sent (the record says so): from here on the dispatcher only waits for results.
    wait_until(lambda: client.hget(batch_key, "state") == b"submitted", 30, "the batch to be submitted")
    client.close()
    server.crash()  # and it stays down

    assert dispatcher.wait(60) == 3
    message = procs.log(dispatcher)
    assert "unreachable for 3 s while waiting for batch" in message, message
    assert "`dispatcher results " in message
