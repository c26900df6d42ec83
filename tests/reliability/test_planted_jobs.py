"""Guarantee 6: only our code runs. Jobs planted straight into Redis (another function, a pickle
payload, a malformed hash) are refused and recorded as failed; nothing of them runs; workers and
dispatchers keep serving."""

from __future__ import annotations

import json
import os
import pickle
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from common import keys
from common.jobs import InertJob
from tests.reliability.conftest import FAST_RECOVERY, Procs, assert_exactly_once, parse_json_results
from tests.support import wait_until

pytestmark = pytest.mark.reliability

QUEUE = keys.rq_queue_key("tasks")


class Evil:
    """Unpickling this runs a shell command: what an attacker with write access to Redis would plant."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def plant(client: redis.Redis, marker: Path) -> dict[str, str]:
    """Plant every kind of hostile or broken job in the queue; returns {job id: what it is}."""
    touch = f"touch {marker}"
    json_queue = Queue("tasks", connection=client, serializer=JSONSerializer)
    pickle_queue = Queue("tasks", connection=client)  # RQ's default serializer: pickle
    planted: dict[str, str] = {}

    def ours(job_id: str, what: str, **fields: Any) -> None:
        """A well-formed job naming our function, then fields overwritten with hostile values."""
        json_queue.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id=job_id)
        if fields:
            client.hset(keys.rq_job_key(job_id), mapping=fields)
        planted[job_id] = what

    json_queue.enqueue("os.system", touch, job_id="p-os-system")
    planted["p-os-system"] = "names os.system"
    json_queue.enqueue("builtins.eval", f"__import__('os').system({touch!r})", job_id="p-eval")
    planted["p-eval"] = "names builtins.eval"
    json_queue.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id="p-instance")
    client.hset(
        keys.rq_job_key("p-instance"),
        "data",
        zlib.compress(json.dumps(["worker.chunk.run_chunk", {"x": 1}, [{"v": 1}], {}]).encode()),
    )
    planted["p-instance"] = "bound to an instance"
    pickle_queue.enqueue("os.system", touch, job_id="p-pickle-queue")
    planted["p-pickle-queue"] = "pickled by RQ's default serializer"
    ours("p-pickle-data", "evil pickle as data", data=zlib.compress(pickle.dumps(Evil(touch))))
    ours("p-pickle-raw", "uncompressed evil pickle as data", data=pickle.dumps(Evil(touch)))
    ours("p-pickle-meta", "evil pickle as meta", meta=pickle.dumps(Evil(touch)))
    ours("p-pickle-result", "evil pickle as result", result=pickle.dumps(Evil(touch)))
    ours(
        "p-callback",
        "callbacks naming os.system",
        success_callback_name="os.system",
        failure_callback_name="os.system",
        stopped_callback_name="os.system",
    )
    ours("p-bogus-status", "status 'bogus'", status="bogus")
    ours("p-bad-timeout", "non-integer timeout", timeout="abc")
    ours("p-bad-dates", "unparsable dates", created_at="yesterday", enqueued_at="soon")
    ours("p-bad-retries", "non-integer retries", retries_left="many")
    ours("p-truncated", "truncated data", data=zlib.compress(b'["worker.chunk.run_chunk", null, [{"v": 1}], {}]')[:12])
    ours("p-not-a-list", "data that is JSON but not a call", data=zlib.compress(b'{"func": "os.system"}'))
    ours("p-bad-payload", "our function, a payload that is not a chunk")
    client.hset(keys.rq_job_key("p-no-data"), mapping={"status": "queued", "origin": "tasks"})
    client.rpush(QUEUE, "p-no-data")
    planted["p-no-data"] = "no data field"
    client.hset(
        keys.rq_job_key("p-only-data"), "data", zlib.compress(json.dumps(["os.system", None, [touch], {}]).encode())
    )
    client.rpush(QUEUE, "p-only-data")
    planted["p-only-data"] = "only a data field"
    return planted


def plant_in_registries(client: redis.Redis, marker: Path) -> None:
    """Broken jobs where maintenance finds them: abandoned in the started registry, stuck in the
    intermediate list (RQ's cleanup of both loads the job and fails it)."""
    touch = f"touch {marker}"
    json_queue = Queue("tasks", connection=client, serializer=JSONSerializer)
    for job_id, fields in {
        "w-bogus": {"status": "bogus", "failure_callback_name": "os.system"},
        "w-pickle": {"data": zlib.compress(pickle.dumps(Evil(touch))), "retries_left": "2"},
        "i-bogus": {"status": "bogus", "timeout": "x"},
    }.items():
        job = json_queue.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id=job_id)
        client.lrem(QUEUE, 0, job_id)
        client.hset(job.key, mapping=fields)
    past = time.time() - 3600
    client.zadd(keys.rq_started_key("tasks"), {"w-bogus:e1": past, "w-pickle:e2": past})
    client.rpush(f"{QUEUE}:intermediate", "i-bogus")
    client.set(f"{QUEUE}:intermediate:first_seen:i-bogus", past)


def failure_reason(client: redis.Redis, job_id: str) -> str:
    """The exception text RQ recorded for a failed job."""
    job = InertJob.fetch(job_id, connection=client, serializer=JSONSerializer)
    result = job.latest_result()
    return (result.exc_string or "") if result else ""


def test_planted_jobs_are_refused_recorded_and_never_run(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    planted = plant(real_client, marker)
    plant_in_registries(real_client, marker)
    procs = procs_factory(redis_url, {**FAST_RECOVERY, "DW_HEARTBEAT_TTL": "5"})  # maintenance every 5 s
    worker = procs.worker("--name", "guard")

    def all_failed() -> bool:
        return all(real_client.hget(keys.rq_job_key(j), "status") == b"failed" for j in planted)

    wait_until(all_failed, 60, "every planted job to be failed")
    failed_registry = {raw.decode() for raw in real_client.zrange(keys.rq_failed_key("tasks"), 0, -1)}
    for job_id, what in planted.items():
        assert job_id in failed_registry, f"{job_id} ({what}) is not in the failed registry"
        reason = failure_reason(real_client, job_id)
        expected = "PayloadError" if job_id == "p-bad-payload" else "refused"
        assert expected in reason, f"{job_id} ({what}): {reason[-300:]}"
    # Maintenance (the worker's, every 5 s; the dispatcher's, below) meets the registry plants.
    wait_until(
        lambda: real_client.hget(keys.rq_job_key("i-bogus"), "status") == b"failed", 30, "the intermediate plant"
    )

    # Still serving: a normal batch completes on the same worker, and its dispatcher's registry
    # cleanup met the same planted jobs.
    done = procs.run("submit", "-", "--json", "--timeout", "60", input_text="add 1 2\nmultiply 3 4\n")
    assert done.returncode == 0, done.stderr
    by_index = assert_exactly_once(parse_json_results(done.stdout), 2)
    assert [by_index[0]["result"], by_index[1]["result"]] == [3, 12]
    assert {r["worker"] for r in by_index.values()} == {"guard"}
    assert worker.poll() is None, procs.log(worker)
    assert "unhandled exception" not in procs.log(worker)
    assert not marker.exists(), "a planted job ran code"
    assert not any(real_client.zscore(keys.rq_started_key("tasks"), m) for m in ("w-bogus:e1", "w-pickle:e2"))
