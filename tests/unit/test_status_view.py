"""The status view: per-worker tasks done and rate, batches in flight, failures; the worker's counter."""

from __future__ import annotations

import io
import json
from typing import Any

import fakeredis

from common import Settings, keys
from common.events import TASKS_DIED, TASKS_RETRIED, WORKERS_LOST, count_event
from common.wire import TaskResult
from dispatcher.status import collect_status
from dispatcher.statusview import CLEAR, RateMeter, render, watch
from worker.publish import ResultPublisher


def _snapshot(now: float, done: int) -> dict[str, Any]:
    return {
        "time": now,
        "queue": {
            "name": "tasks",
            "queued_chunks": 3,
            "running_chunks": 1,
            "failed_chunks": 1,
            "failed_chunk_ids": ["bad1-0"],
        },
        "workers": [
            {"name": "w1", "host": "h1", "state": "busy", "slots": 1, "current_batch": "b1", "tasks_done": done}
        ],
        "batches": [
            {"batch_id": "b1", "state": "open", "created": now, "total": None, "done": 7, "failed": 0},
            {"batch_id": "b0", "state": "finished", "created": now, "total": 4, "done": 4, "failed": 2},
        ],
    }


def test_render_shows_workers_batches_in_flight_and_failures() -> None:
    text = render(_snapshot(1000.0, 1500), {"w1": 250.0})
    assert "3 chunks queued, 1 running, 1 failed" in text
    worker_line = next(line for line in text.splitlines() if line.strip().startswith("w1"))
    assert "h1" in worker_line and "busy" in worker_line and "b1" in worker_line
    assert "1,500" in worker_line and "250" in worker_line
    assert "batches in flight: 1" in text
    assert "batch b0: 2 failed of 4 done" in text
    assert "chunk job bad1-0 failed" in text


def test_rate_is_the_counter_difference_over_time() -> None:
    meter = RateMeter()
    assert meter.update(_snapshot(100.0, 1000)) == {"w1": None}
    assert meter.update(_snapshot(102.0, 1600)) == {"w1": 300.0}


def test_watch_redraws_count_times_and_clears_only_a_terminal() -> None:
    frames = iter([_snapshot(1.0, 0), _snapshot(2.0, 10)])
    out = io.StringIO()
    watch(lambda: next(frames), out, interval=0.01, count=2)
    text = out.getvalue()
    assert text.count("workers: 1 live") == 2 and CLEAR not in text
    first, second = (line.split() for line in text.splitlines() if line.strip().startswith("w1"))
    assert first[4:6] == ["0", "-"]  # TASKS DONE, TASKS/S: no rate from one frame
    assert second[4:6] == ["10", "10"]  # ten more tasks in one second


def test_publisher_counts_tasks_done_in_the_worker_hash(fake_client: fakeredis.FakeRedis) -> None:
    fake_client.hset(keys.rq_worker_key("w1"), "state", "busy")
    publisher = ResultPublisher(fake_client, "b1", 0, 60, "w1")
    for index in range(5):
        publisher.add(TaskResult(index, "add", [1, 1], {}, None, True, 2, None, None, "w1", 0.1))
    publisher.flush()
    publisher.flush()
    assert fake_client.hget(keys.rq_worker_key("w1"), "dw_tasks_done") == b"5"


def test_status_snapshot_has_tasks_done_and_current_batch(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    key = keys.rq_worker_key("w1")
    fake_client.sadd(keys.RQ_WORKERS, key)
    fake_client.sadd(keys.rq_workers_by_queue_key("tasks"), key)
    fake_client.hset(
        key,
        mapping={"state": "busy", "current_job": "abc123-4", "dw_tasks_done": "42", "dw_tasks": json.dumps(["add"])},
    )
    worker = collect_status(fake_client, fake_settings)["workers"][0]
    assert (worker["tasks_done"], worker["current_batch"]) == (42, "abc123")


def test_status_shows_tasks_retried_and_workers_lost_in_the_last_hour(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    count_event(fake_client, TASKS_RETRIED, 61)
    count_event(fake_client, WORKERS_LOST, 2)
    count_event(fake_client, TASKS_DIED)
    snapshot = collect_status(fake_client, fake_settings)
    assert snapshot["last_hour"] == {TASKS_RETRIED: 61, WORKERS_LOST: 2, TASKS_DIED: 1}
    text = render(snapshot)
    assert "last hour: 61 tasks retried, 2 worker processes lost, 1 tasks failed with WorkerDied" in text
    assert "last hour: 0 tasks retried, 0 worker processes lost" in render(_snapshot(1000.0, 1))
