"""Routing by task name: the queue of each chunk, the queues a worker serves, RQ's records for them."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future

import fakeredis

from common import keys
from common.catalogue import Catalogue
from common.routing import BUILTIN_TASKS, queue_family, queue_of, route_of, served_queues, split_queue
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.chunking import cut_by_route, group_pending
from dispatcher.executorbatch import ExecutorBatch
from dispatcher.status import collect_status
from dispatcher.statusview import render
from tests.conftest import builtin_catalogue
from tests.unit.test_enqueue import TIMESTAMPS, ours, rq_enqueue
from worker import runtime
from worker.runner import FastChunkWorker
from worker.runtime import Runtime


def test_builtin_tasks_stay_on_the_queue_and_user_tasks_get_their_own() -> None:
    assert {"add", "sleep", "echo", "fib"} <= BUILTIN_TASKS and "images.resize" not in BUILTIN_TASKS
    assert route_of("add") is None and route_of("images.resize") == "images.resize"
    assert queue_of("tasks", None) == "tasks" and queue_of("tasks", "images.resize") == "tasks@images.resize"
    assert split_queue("tasks@images.resize") == ("tasks", "images.resize") and split_queue("q") == ("q", None)
    names = ["tasks@b.x", "tasks", "other@b.x", "tasks@a", "tasksx"]
    assert queue_family("tasks", names) == ["tasks", "tasks@a", "tasks@b.x"]


def test_a_worker_serves_its_user_tasks_queues_first_for_each_configured_queue() -> None:
    assert served_queues(["tasks"], ["add", "fib"]) == ["tasks"]
    assert served_queues(["hi", "lo"], ["z.b", "add", "a"]) == ["hi@a", "hi@z.b", "hi", "lo@a", "lo@z.b", "lo"]


def test_chunks_are_cut_where_the_route_changes() -> None:
    names = ["add", "fib", "a.x", "a.x", "a.x", "add", "b.y", "b.y", "add"]
    specs = [TaskSpec(i, name) for i, name in enumerate(names)]
    chunks = [[s.index for s in chunk] for chunk in cut_by_route(specs, 2)]
    assert chunks == [[0, 1], [2, 3], [4], [5], [6, 7], [8]]


def test_a_batch_goes_to_one_queue_per_route_in_chunk_order(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    names = ["add"] * 3 + ["images.resize"] * 2 + ["add", "usertasks.double", "add", "add"]
    items = [TaskSpec(i, name, [i]) for i, name in enumerate(names)]
    summary = submit_batch(
        fake_client, fake_settings, items, SubmitOptions(chunk_size=4, wait=False), print, batch_id="b"
    )
    assert summary.total == 9
    spans = [span.decode() for span in fake_client.lrange(keys.chunks_key("b"), 0, -1)]
    assert spans == ["0:2:3", "3:4:2", "5:5:1", "6:6:1", "7:8:2"]
    assert fake_client.lrange(keys.rq_queue_key("tasks"), 0, -1) == [b"b-0", b"b-2", b"b-4"]
    assert fake_client.lrange(keys.rq_queue_key("tasks@images.resize"), 0, -1) == [b"b-1"]
    assert fake_client.lrange(keys.rq_queue_key("tasks@usertasks.double"), 0, -1) == [b"b-3"]
    assert fake_client.hget(keys.rq_job_key("b-1"), "origin") == b"tasks@images.resize"
    assert fake_client.smembers(keys.RQ_QUEUES) == {
        keys.rq_queue_key("tasks").encode(),
        keys.rq_queue_key("tasks@images.resize").encode(),
        keys.rq_queue_key("tasks@usertasks.double").encode(),
    }
    assert fake_client.hget(keys.batch_key("b"), "sent") == b"9"


def test_a_routed_job_hash_is_what_rq_writes_for_that_queue(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    tasks = [TaskSpec(i, "images.resize", [f"{i}.png", i]) for i in range(3)]
    routed = dataclasses.replace(fake_settings, queue="tasks@images.resize")  # RQ's own enqueue into that queue
    rq_enqueue(fake_client, routed, "theirs", 0, tasks)
    ours(fake_client, fake_settings, "mine", tasks)
    theirs = fake_client.hgetall(keys.rq_job_key("theirs-0"))
    mine = fake_client.hgetall(keys.rq_job_key("mine-0"))
    assert set(mine) == set(theirs)
    same = {b"data", b"description", *TIMESTAMPS}
    assert {k: v for k, v in mine.items() if k not in same} == {k: v for k, v in theirs.items() if k not in same}
    assert fake_client.lrange(keys.rq_queue_key("tasks@images.resize"), 0, -1) == [b"theirs-0", b"mine-0"]
    assert fake_client.llen(keys.rq_queue_key("tasks")) == 0


def _worker(client: fakeredis.FakeRedis, settings: Settings, catalogue: Catalogue, name: str) -> FastChunkWorker:
    runtime.configure(Runtime(settings, catalogue, name))
    return FastChunkWorker(runtime.current(), client, [settings.queue])


def test_only_a_worker_that_offers_a_user_task_takes_its_chunks(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    names = ["add", "images.resize", "add", "images.resize"]
    items = [TaskSpec(0, "add", [1, 2]), TaskSpec(1, "images.resize", ["a.png", 5]), TaskSpec(2, "add", [3, 4])]
    items.append(TaskSpec(3, "images.resize", ["b.png", 6]))
    submit_batch(fake_client, fake_settings, items, SubmitOptions(chunk_size=10, wait=False), print, batch_id="b")
    plain = _worker(fake_client, fake_settings, builtin_catalogue(), "plain")
    assert plain.queue_names() == ["tasks"]
    plain.work(burst=True, logging_level="WARNING")
    assert (
        fake_client.llen(keys.rq_queue_key("tasks")) == 0
        and fake_client.llen(keys.rq_queue_key("tasks@images.resize")) == 2
    )

    offering = builtin_catalogue()
    offering.register(lambda path, width: f"{path}@{width}w", name="images.resize")
    worker = _worker(fake_client, fake_settings, offering, "offering")
    assert worker.queue_names() == ["tasks@images.resize", "tasks"]
    worker.work(burst=True, logging_level="WARNING")
    entries = fake_client.xrange(keys.results_key("b"))
    rows = {row[0]: (fields[b"w"].decode(), row) for _id, fields in entries for row in json.loads(fields[b"r"])}
    assert sorted(rows) == [0, 1, 2, 3] and [rows[i][1][2] for i in range(4)] == names
    assert {rows[i][0] for i in (1, 3)} == {"offering"} and {rows[i][0] for i in (0, 2)} == {"plain"}
    assert all(row[5] for _worker_name, row in rows.values())


def test_status_shows_routes_and_who_offers_what(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    for name, tasks in (("plain", ["add", "fib"]), ("offering", ["add", "images.resize", "x.y"])):
        key = keys.rq_worker_key(name)
        fake_client.sadd(keys.RQ_WORKERS, key)
        fake_client.sadd(keys.rq_workers_by_queue_key("tasks"), key)
        fake_client.hset(key, mapping={"state": "idle", "queues": "tasks", "dw_tasks": json.dumps(tasks)})
    items = [TaskSpec(0, "thumbnails.make", ["a"]), TaskSpec(1, "images.resize", ["a", 1])]
    submit_batch(fake_client, fake_settings, items, SubmitOptions(chunk_size=1, wait=False), print, batch_id="b")
    snapshot = collect_status(fake_client, fake_settings)
    assert snapshot["queue"]["queued_chunks"] == 2
    assert snapshot["offered"] == {"images.resize": ["offering"], "x.y": ["offering"]}
    workers = {w["name"]: w for w in snapshot["workers"]}
    assert workers["plain"]["user_tasks"] == [] and workers["offering"]["user_tasks"] == ["images.resize", "x.y"]
    text = render(snapshot)
    assert "tasks@thumbnails.make: 1 queued, 0 running, 0 failed (no live worker offers it)" in text
    assert "tasks@images.resize: 1 queued, 0 running, 0 failed (offered by 1 live worker(s))" in text
    offer_lines = [line.split() for line in text.splitlines() if line.strip().startswith(("images.resize", "x.y"))]
    assert offer_lines == [["images.resize", "by", "offering"], ["x.y", "by", "offering"]]


def test_executor_submits_that_arrive_together_are_grouped_by_route(fake_client: fakeredis.FakeRedis) -> None:
    batch = ExecutorBatch(fake_client, Settings.from_env(redis_url="redis://fake:6379/0"), "b1", chunksize=3)
    names = ["add", "a.x", "fib", "a.x", "b.y", "add", "a.x"]
    futures: list[Future[object]] = [Future() for _ in names]
    pending = [(True, [TaskSpec(i, name, [i])]) for i, name in enumerate(names)]
    batch._futures = dict(enumerate(futures))
    batch._group_submits_by_route(pending)
    chunks = list(group_pending(pending, 3))
    assert [[(s.index, s.task) for s in chunk] for chunk in chunks] == [
        [(0, "add"), (1, "fib"), (2, "add")],
        [(3, "a.x"), (4, "a.x"), (5, "a.x")],
        [(6, "b.y")],
    ]
    # each task keeps its own future, under its new index
    by_arg = {spec.args[0]: spec.index for chunk in chunks for spec in chunk}
    assert all(batch._futures[by_arg[i]] is futures[i] for i in range(len(names)))
    batch.close(wait=False, cancel_futures=False)
