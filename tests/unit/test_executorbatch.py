"""The executor's batch and its threads (dispatcher.executorbatch) on fakeredis, without workers."""

from __future__ import annotations

from concurrent.futures import Future

import fakeredis
import pytest

from common import keys
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.executorbatch import BrokenRedisExecutor, ExecutorBatch
from dispatcher.mapstream import ChunkResults


def test_a_failed_send_fails_its_futures_and_breaks_the_batch(fake_settings: Settings) -> None:
    server = fakeredis.FakeServer()
    server.connected = False  # every command fails as if Redis were unreachable
    batch = ExecutorBatch(fakeredis.FakeRedis(server=server), fake_settings, "b1", None)
    future: Future[object] = Future()
    batch.add_task(TaskSpec(-1, "add", [1, 2]), future)
    error = future.exception(timeout=60)  # the sender thread fails it
    assert isinstance(error, BrokenRedisExecutor) and "task not sent" in str(error)
    with pytest.raises(BrokenRedisExecutor, match="sending tasks to Redis failed"):
        batch.add_task(TaskSpec(-1, "add", [3, 4]), Future())
    batch.close(wait=True, cancel_futures=False)


def test_tasks_are_numbered_in_order_and_sent_as_an_open_batch(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch = ExecutorBatch(fake_client, fake_settings, "b1", 2)
    slot = ChunkResults(3)
    specs = [TaskSpec(-1, "add", [i, i]) for i in range(3)]
    batch.add_chunk(specs, slot)
    loose = TaskSpec(-1, "add", [9, 9])
    batch.add_task(loose, Future())
    batch.flush()
    assert [s.index for s in specs] == [0, 1, 2] and slot.first == 0 and loose.index == 3
    assert fake_client.hget(keys.batch_key("b1"), "state") == b"open"
    assert fake_client.lrange(keys.chunks_key("b1"), 0, -1) == [b"0:2:3", b"3:3:1"]
    batch.close(wait=True, cancel_futures=True)
    record = fake_client.hgetall(keys.batch_key("b1"))
    assert (record[b"state"], record[b"total"]) == (b"submitted", b"4")
    with pytest.raises(RuntimeError, match="after shutdown"):
        batch.add_task(TaskSpec(-1, "add", [1, 1]), Future())
