"""The check that refuses tasks no live worker offers, before anything is enqueued."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import fakeredis
import pytest

from common import Settings
from common.errors import TaskNotOffered
from common.wire import TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.offered import OfferedTasks, check_offered


def advertise(client: fakeredis.FakeRedis, name: str, tasks: list[str], queue: str = "tasks") -> None:
    """Register a worker the way RQ and our ChunkWorker do (RQ's hash plus our dw_ fields)."""
    key = f"rq:worker:{name}"
    client.sadd("rq:workers", key)
    client.sadd(f"rq:workers:{queue}", key)
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


def test_a_worker_whose_hash_expired_offers_nothing(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    advertise(fake_client, "w1", ["add"])
    fake_client.delete("rq:worker:w1")  # what RQ's TTL does to a worker that stopped heartbeating
    offered = OfferedTasks(fake_client, fake_settings)
    with pytest.raises(TaskNotOffered, match="no live worker serves queue 'tasks'"):
        offered.require("add")


def test_a_worker_that_joins_later_is_seen(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    offered = OfferedTasks(fake_client, fake_settings)
    with pytest.raises(TaskNotOffered):
        offered.require("add")
    advertise(fake_client, "w1", ["add"])
    offered._read_at = None  # as if the refresh interval had passed
    offered.require("add")


def test_names_are_checked_as_read_without_materialising(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    advertise(fake_client, "w1", ["add"])
    offered = OfferedTasks(fake_client, fake_settings)
    produced = 0

    def endless() -> Iterator[TaskSpec]:
        nonlocal produced
        for index in itertools.count():
            produced += 1
            yield TaskSpec(index, "bogus" if index == 1000 else "add", [1, 2])

    checked = check_offered(endless(), offered)
    assert sum(1 for _ in itertools.islice(checked, 1000)) == 1000
    with pytest.raises(TaskNotOffered, match="'bogus'"):
        next(checked)
    assert produced == 1001


def test_submit_refuses_before_enqueueing_anything(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    advertise(fake_client, "w1", ["add"])
    items = [TaskSpec(i, "add", [i, i]) for i in range(10)] + [TaskSpec(10, "nope", [])]
    with pytest.raises(TaskNotOffered, match="nothing was enqueued"):
        submit_batch(fake_client, fake_settings, items, SubmitOptions(check_tasks=True, wait=False), print)
    assert fake_client.llen("rq:queue:tasks") == 0
    assert fake_client.zcard("dw:batches") == 0


def test_unknown_name_after_chunks_were_sent_aborts_the_batch(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    advertise(fake_client, "w1", ["add"])
    items = [TaskSpec(i, "add", [i, i]) for i in range(4)] + [TaskSpec(4, "nope", []), TaskSpec(5, "add", [1, 1])]
    options = SubmitOptions(chunk_size=2, check_tasks=True, wait=False, streaming=True)
    with pytest.raises(TaskNotOffered, match="aborted after its first 4 task") as info:
        submit_batch(fake_client, fake_settings, items, options, print, batch_id="b1")
    assert "dispatcher results b1" in str(info.value)
    record = fake_client.hgetall("dw:batch:b1")
    assert record[b"state"] == b"aborted" and record[b"total"] == b"4"
    assert fake_client.llen("rq:queue:tasks") == 2  # the two chunks before the unknown name, nothing after


def test_without_the_check_anything_is_enqueued(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    items = [TaskSpec(0, "nope", [])]
    summary = submit_batch(fake_client, fake_settings, items, SubmitOptions(chunk_size=1, wait=False), print)
    assert summary.total == 1 and fake_client.llen("rq:queue:tasks") == 1
