"""Tasks that live workers do not offer: each fails alone as TaskNotOffered, never enqueued."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import fakeredis
import pytest

from common import Settings, keys
from common.errors import TaskNotOffered
from common.wire import TaskResult, TaskSpec
from dispatcher.batch import SubmitOptions, refuse_bad_input, submit_batch
from dispatcher.offered import NotOffered, OfferedFilter, OfferedTasks


def advertise(client: fakeredis.FakeRedis, name: str, tasks: list[str], queue: str = "tasks") -> None:
    """Register a worker the way RQ and our FastChunkWorker do (RQ's hash plus our dw_ fields)."""
    key = keys.rq_worker_key(name)
    client.sadd(keys.RQ_WORKERS, key)
    client.sadd(keys.rq_workers_by_queue_key(queue), key)
    client.hset(key, mapping={"state": "idle", "queues": queue, "dw_tasks": json.dumps(tasks), "dw_slots": "2"})


def test_union_of_what_live_workers_offer(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    advertise(fake_client, "w1", ["add", "images.resize"])
    advertise(fake_client, "w2", ["add", "fib"])
    advertise(fake_client, "other", ["secret"], queue="elsewhere")
    offered = OfferedTasks(fake_client, fake_settings)
    offered.refresh()
    assert offered.names == {"add", "images.resize", "fib"}
    assert (offered.workers, offered.slots) == (2, 4)
    offered.require("images.resize")
    with pytest.raises(TaskNotOffered) as info:
        offered.require("secret")
    message = str(info.value)
    assert "'secret'" in message and "add, fib, images.resize" in message and "--no-check" in message


def test_with_no_live_worker_nothing_is_refused(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    # Behaviour changed: with no live worker the tasks wait for one (they used to be refused).
    advertise(fake_client, "w1", ["add"])
    fake_client.delete(keys.rq_worker_key("w1"))  # what RQ's TTL does to a worker that stopped heartbeating
    offered = OfferedTasks(fake_client, fake_settings)
    assert not offered.refuses("add") and not offered.refuses("anything.else")
    assert offered.workers == 0


def test_a_worker_that_joins_later_is_seen(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    advertise(fake_client, "w0", ["add"])
    offered = OfferedTasks(fake_client, fake_settings)
    with pytest.raises(TaskNotOffered):
        offered.require("images.resize")
    advertise(fake_client, "w1", ["add", "images.resize"])
    offered._read_at = None  # as if the refresh interval had passed
    offered.require("images.resize")


def test_names_are_checked_as_read_without_materialising(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    advertise(fake_client, "w1", ["add"])
    screen = OfferedFilter(OfferedTasks(fake_client, fake_settings))
    produced = 0

    def endless() -> Iterator[TaskSpec]:
        nonlocal produced
        for index in itertools.count():
            produced += 1
            yield TaskSpec(index, "bogus" if index in (1000, 1002) else "add", [1, 2])

    checked = screen(endless())
    assert all(isinstance(item, TaskSpec) for item in itertools.islice(checked, 1000))
    refused = next(checked)
    assert isinstance(refused, NotOffered) and refused.spec.index == 1000 and produced == 1001
    assert [type(item) for item in itertools.islice(checked, 2)] == [TaskSpec, NotOffered]
    assert screen.refused == {"bogus": 2}
    assert screen.describe().count("bogus") == 1 and "2 tasks" in screen.describe()


def test_an_unoffered_task_fails_alone_and_the_batch_runs(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    # Behaviour changed: an unknown name no longer aborts the batch; it is that task's failed result.
    advertise(fake_client, "w1", ["add"])
    items = [TaskSpec(i, "add", [i, i]) for i in range(4)] + [TaskSpec(4, "nope", [7], {}, "x")]
    items.append(TaskSpec(5, "add", [1, 1]))
    options = SubmitOptions(chunk_size=2, check_tasks=True, wait=False, streaming=True)
    summary = submit_batch(fake_client, fake_settings, items, options, print, batch_id="b1")
    assert summary.total == 6 and "'nope' (1 task)" in summary.not_offered
    record = fake_client.hgetall("dw:batch:b1")
    assert record[b"state"] == b"submitted" and record[b"total"] == b"6" and record[b"failed"] == b"1"
    assert fake_client.llen(keys.rq_queue_key("tasks")) == 3  # chunks [0,1] [2,3] [5]; the unoffered task never
    assert not fake_client.exists(keys.rq_queue_key("tasks@nope"))
    entries = fake_client.xrange("dw:batch:b1:results")
    rows = [row for _id, fields in entries for row in json.loads(fields[b"r"])]
    assert len(rows) == 1 and rows[0][:5] == [4, "x", "nope", [7], {}] and rows[0][6][0] == "TaskNotOffered"


def test_strict_refuses_an_unoffered_name(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    advertise(fake_client, "w1", ["add"])
    offered = OfferedTasks(fake_client, fake_settings)
    with pytest.raises(TaskNotOffered, match="task 3 of the input: task 'nope'"):
        refuse_bad_input([TaskSpec(0, "add"), TaskSpec(1, "add"), TaskSpec(2, "nope")], offered)
    refuse_bad_input([TaskSpec(0, "add")], offered)


def test_not_offered_result_keeps_the_task(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    result = NotOffered(TaskSpec(3, "nope", [1], {"k": 2}, "id3"), "why").to_result()
    assert result == TaskResult(
        3, "nope", [1], {"k": 2}, "id3", False, None, "TaskNotOffered", "why", "dispatcher", 0.0
    )


def test_without_the_check_anything_is_enqueued(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    items = [TaskSpec(0, "nope", [])]
    summary = submit_batch(fake_client, fake_settings, items, SubmitOptions(chunk_size=1, wait=False), print)
    assert (
        summary.total == 1 and fake_client.llen(keys.rq_queue_key("tasks@nope")) == 1
    )  # waits for a worker offering it
