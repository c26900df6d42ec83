"""Guarantee 10: `dispatcher cancel BATCH_ID` stops queued chunks from running, reports which tasks
were cancelled, and a dispatcher waiting on the batch ends promptly with every task resolved once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    assert_exactly_once,
    parse_json_results,
    stream_entries,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability

TOTAL = 40
CHUNK = 4


def test_cancel_stops_queued_chunks_and_ends_the_wait(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--name", "only")
    wait_until(lambda: real_client.scard(keys.RQ_WORKERS), 30, "the worker")
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.2 {i}" for i in range(TOTAL)])
    waiting = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(CHUNK))
    batch_id = wait_until(lambda: re.search(r"batch (\w+): submitting", procs.log(waiting)), 30, "the id").group(1)
    wait_until(lambda: stream_entries(real_client, batch_id), 30, "the first results")

    cancelled = procs.run("cancel", batch_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    report = json.loads(cancelled.stdout)

    assert waiting.wait(30) == 1, procs.log(waiting)  # cancelled tasks count as failed
    records = parse_json_results(procs.output(waiting))
    by_index = assert_exactly_once(records, TOTAL)
    ran = {i for i, r in by_index.items() if r["ok"]}
    stopped = {i for i, r in by_index.items() if not r["ok"]}
    assert all(by_index[i]["error"]["type"] == "Cancelled" for i in stopped)
    assert all(by_index[i]["result"] == i for i in ran)
    assert report["cancelled_tasks"], report
    assert set(report["cancelled_tasks"]) <= stopped
    # Only chunks a worker had already taken ran: at most the ones the cancel found off the queue.
    taken = report["chunks_left_running"] + report["chunks_finished"]
    assert len(ran) <= CHUNK * taken, (len(ran), report)
    assert real_client.llen(keys.rq_queue_key("tasks")) == 0
    assert worker.poll() is None

    human = procs.run("cancel", batch_id)  # a second cancel finds nothing left to cancel
    assert human.returncode == 0 and "cancelled 0 tasks" in human.stdout, human.stdout + human.stderr
    # Every chunk now has all its results: none is said to be running any more.
    assert "0 chunks already running go on" in human.stdout, human.stdout
    missing = procs.run("cancel", "nosuchbatch")
    assert missing.returncode == 2 and "no batch" in missing.stderr


def test_worker_answers_a_chunk_of_a_cancelled_batch_without_running_it(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    # No worker yet: the whole batch waits in the queue; cancel; then a chunk re-queued by hand
    # (as a retry after a crash would) reaches a worker, which must answer it with Cancelled.
    procs = procs_factory(redis_url, FAST_RECOVERY)
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 5 {i}" for i in range(8)])
    submitted = procs.run("submit", str(batch), "--no-wait", "--no-check", "--chunk-size", "4")
    batch_id = submitted.stdout.strip()
    real_client.hset(f"dw:batch:{batch_id}", "cancelled", "1")  # the mark alone, chunks still queued
    procs.worker("--name", "late")
    fetched = procs.run("results", batch_id, "--json", "--timeout", "30")
    assert fetched.returncode == 1, fetched.stderr
    by_index = assert_exactly_once(parse_json_results(fetched.stdout), 8)
    assert {r["error"]["type"] for r in by_index.values()} == {"Cancelled"}
    assert {r["worker"] for r in by_index.values()} == {"late"}  # answered by the worker, nothing slept 5 s
