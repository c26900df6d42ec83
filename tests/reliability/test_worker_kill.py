"""Guarantee 1: a worker SIGKILLed mid-chunk; its chunk runs again on another worker, nothing is lost
and nothing is duplicated in the output."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from tests.reliability.conftest import (
    Procs,
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


def worker_pid(client: redis.Redis, name: str) -> int:
    """The pid of the process that runs a worker (under `worker`'s supervisor it is a child process)."""
    return int(client.hget(keys.rq_worker_key(name), "dw_pid"))  # type: ignore[arg-type]


def kill_and_time_rerun(client: redis.Redis, victim: subprocess.Popen[bytes], batch_id: str) -> float:
    """SIGKILL the victim (its supervisor first, so no replacement named "victim" appears, then its
    worker process) and return the seconds until another worker publishes results of the batch."""
    victim.kill()
    victim.wait()
    os.kill(worker_pid(client, "victim"), signal.SIGKILL)
    killed = time.monotonic()

    def rerun_by_other() -> bool:
        return any(f[b"w"] != b"victim" for _id, f in stream_entries(client, batch_id))

    wait_until(rerun_by_other, HANG_GUARD, "the chunk to run again on another worker", interval=0.02)
    return time.monotonic() - killed


def test_killed_worker_chunk_runs_again_elsewhere(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    # Default heartbeat settings (2 s interval, 10 s TTL): this test measures the real recovery time.
    procs = procs_factory(redis_url)
    victim = procs.worker("--name", "victim")
    wait_until(lambda: live_worker_names(real_client) == {"victim"}, 30, "the victim worker")
    total = 12
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.5 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(total))
    job_id = wait_until(lambda: current_job(real_client, "victim"), 30, "the victim to take the chunk")
    batch_id = job_id.rsplit("-", 1)[0]
    wait_until(lambda: stream_entries(real_client, batch_id), 30, "the victim's first results")  # mid-chunk
    procs.worker("--name", "rescuer")
    wait_until(lambda: "rescuer" in live_worker_names(real_client), 30, "the rescuer worker")

    recovery = kill_and_time_rerun(real_client, victim, batch_id)
    record_figure("kill_recovery_seconds", seconds=round(recovery, 2), heartbeat_ttl=10, heartbeat_interval=2)

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))
    by_index = assert_exactly_once(records, total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    workers = {r["worker"] for r in records}
    assert "victim" in workers and workers - {"victim"}, workers  # part ran before the kill, the rest after


def test_recovery_needs_no_dispatcher(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    # Nobody waits on the batch: a surviving worker must find the dead chunk by itself. Default
    # heartbeat settings, so the recovery time measured here is the one users get.
    procs = procs_factory(redis_url)
    victim = procs.worker("--name", "victim")
    wait_until(lambda: live_worker_names(real_client) == {"victim"}, 30, "the victim worker")
    total = 8
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.5 {i}" for i in range(total)])
    submitted = procs.run("submit", str(batch), "--no-wait", "--chunk-size", str(total))
    batch_id = submitted.stdout.strip()
    wait_until(lambda: stream_entries(real_client, batch_id), 30, "the victim's first results")
    procs.worker("--name", "rescuer")
    wait_until(lambda: "rescuer" in live_worker_names(real_client), 30, "the rescuer worker")
    recovery = kill_and_time_rerun(real_client, victim, batch_id)
    record_figure("kill_recovery_seconds_without_dispatcher", seconds=round(recovery, 2), heartbeat_ttl=10)

    def finished() -> bool:
        done = real_client.hget(f"dw:batch:{batch_id}", "done")
        return done is not None and int(done) >= total

    wait_until(finished, HANG_GUARD, "the rescuer to finish the chunk with no dispatcher running")
    fetched = procs.run("results", batch_id, "--json", "--timeout", "30")
    assert fetched.returncode == 0, fetched.stderr
    by_index = assert_exactly_once(parse_json_results(fetched.stdout), total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
