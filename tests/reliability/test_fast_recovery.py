"""Recovery in seconds: a supervised worker process killed mid-chunk has its chunk handed back by its
supervisor; a live worker whose connections keep dropping never has its chunk taken away; a Redis
user that may not list clients still gets its chunks back (by the heartbeat TTL)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.reliability.conftest import (
    Procs,
    RestartableRedis,
    assert_exactly_once,
    current_job,
    live_worker_names,
    parse_json_results,
    record_figure,
    stream_entries,
    write_tasks,
)
from tests.support import HANG_GUARD, wait_until

pytestmark = pytest.mark.reliability


def _job_started_at(client: redis.Redis, job_id: str) -> bytes | None:
    return client.hget(f"rq:job:{job_id}", "started_at")  # type: ignore[return-value]


def test_supervised_process_killed_mid_chunk_is_handed_back_by_its_supervisor(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    # Default heartbeat settings: the supervisor must not need them.
    procs = procs_factory(redis_url)
    supervisor = procs.worker("--name", "sup", "--concurrency", "2")
    wait_until(lambda: live_worker_names(real_client) == {"sup-0", "sup-1"}, 30, "both worker processes")
    total = 12
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.4 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(total))
    runner = wait_until(
        lambda: next((n for n in ("sup-0", "sup-1") if current_job(real_client, n)), None),
        30,
        "a process to take the chunk",
    )
    job_id = current_job(real_client, runner)
    assert job_id is not None
    batch_id = job_id.rsplit("-", 1)[0]
    wait_until(lambda: stream_entries(real_client, batch_id), 30, "the first results")  # mid-chunk
    first_start = _job_started_at(real_client, job_id)
    os.kill(int(real_client.hget(f"rq:worker:{runner}", "dw_pid")), signal.SIGKILL)  # type: ignore[arg-type]
    killed = time.monotonic()
    wait_until(
        lambda: _job_started_at(real_client, job_id) not in (None, first_start),
        HANG_GUARD,
        "the chunk to start again",
        interval=0.01,
    )
    record_figure("supervised_kill_rerun_seconds", seconds=round(time.monotonic() - killed, 3))

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)
    by_index = assert_exactly_once(parse_json_results(procs.output(dispatcher)), total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    assert "its chunk was handed back" in procs.log(supervisor)


def _drop_connections(client: redis.Redis, name: str, stop: threading.Event, dropped: list[int]) -> None:
    """Kill every connection named `name`, again and again, until stopped."""
    while not stop.wait(0.05):
        for entry in client.client_list():
            if entry.get("name") == name:
                try:
                    client.client_kill_filter(_id=entry["id"])
                    dropped.append(1)
                except redis.ResponseError:
                    pass  # closed meanwhile


def test_live_worker_whose_connections_keep_dropping_keeps_its_chunk(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url)
    real_client.sadd("rq:queues", "rq:queue:tasks", "rq:queue:tasks@rt.nap")  # queues used before
    # The sweeper: first to start, it holds the fleet's lease; it serves another queue, so it looks
    # at the steady worker's chunk only as the fleet's sweeper.
    sweeper = procs.worker("--name", "sweeper", "--queue", "other")
    wait_until(lambda: real_client.get("dw:sweeper") == b"sweeper", 30, "the sweeper to hold the lease")
    procs.worker("--name", "steady")
    wait_until(lambda: "steady" in live_worker_names(real_client), 30, "the steady worker")
    total = 16
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.5 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(total))
    job_id = wait_until(lambda: current_job(real_client, "steady"), 30, "the steady worker to take the chunk")
    first_start = _job_started_at(real_client, job_id)
    stop, dropped = threading.Event(), []
    dropper = threading.Thread(target=_drop_connections, args=(real_client, "steady", stop, dropped), daemon=True)
    dropper.start()
    try:
        assert dispatcher.wait(60) == 0, procs.log(dispatcher)
    finally:
        stop.set()
        dropper.join()
    assert real_client.get("dw:sweeper") == b"sweeper"
    assert dropped, "no connection of the steady worker was ever dropped: the test proved nothing"
    by_index = assert_exactly_once(parse_json_results(procs.output(dispatcher)), total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    assert "handed back" not in procs.log(sweeper)
    assert _job_started_at(real_client, job_id) in (None, first_start)  # never started again


def test_without_client_list_a_dead_workers_chunk_still_runs_again(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()
    admin = redis.Redis.from_url(server.url)
    allowed = ["+@all", "-client", "+client|setname", "+client|getname", "+client|info", "+client|id"]
    admin.acl_setuser("limited", enabled=True, passwords=["+secret"], keys=["*"], channels=["*"], commands=allowed)
    url = f"redis://limited:secret@127.0.0.1:{server.port}/0"
    # Default heartbeats: the sweeper meets the dead worker's chunk while its heartbeat still holds,
    # so it must try CLIENT LIST (and fall back) before the TTL hands the chunk back.
    procs = procs_factory(url)
    victim = procs.worker("--name", "victim")
    wait_until(lambda: live_worker_names(admin) == {"victim"}, 30, "the victim")
    total = 8
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.3 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(total))
    job_id = wait_until(lambda: current_job(admin, "victim"), 30, "the victim to take the chunk")
    wait_until(lambda: stream_entries(admin, job_id.rsplit("-", 1)[0]), 30, "the victim's first results")
    rescuer = procs.worker("--name", "rescuer")
    wait_until(lambda: "rescuer" in live_worker_names(admin), 30, "the rescuer")
    victim.kill()
    victim.wait()
    os.kill(int(admin.hget("rq:worker:victim", "dw_pid")), signal.SIGKILL)  # type: ignore[arg-type]

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)
    by_index = assert_exactly_once(parse_json_results(procs.output(dispatcher)), total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    wait_until(lambda: "refuses CLIENT LIST" in procs.log(rescuer), 30, "the rescuer to say it falls back")
    assert procs.log(rescuer).count("refuses CLIENT LIST") == 1
    admin.close()
