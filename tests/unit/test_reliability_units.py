"""Unit tests on fakeredis for the reliability pieces: cancel, the dispatcher's outage guard, the
crash-proof job class, and the wire and reader fixes the fuzz tests led to."""

from __future__ import annotations

import json
import math
import pickle
import zlib

import fakeredis
import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from common import default_catalogue, keys
from common.errors import EXIT_REDIS, PayloadError, RedisUnavailable
from common.jobs import InertJob
from common.settings import Settings
from common.wire import TaskResult, decode_results, encode_results
from dispatcher.batch import SubmitOptions, await_batch, submit_batch
from dispatcher.cancel import cancel_batch
from dispatcher.outage import OutageGuard
from dispatcher.reader import BadInput, TaskSpec, read_tasks
from worker import runtime
from worker.runner import FastChunkWorker
from worker.runtime import Runtime


def _submit(client: fakeredis.FakeRedis, settings: Settings, count: int, chunk_size: int) -> str:
    items = read_tasks([f"add {i} 0" for i in range(count)], "text", settings.max_arg_bytes)
    return submit_batch(client, settings, items, SubmitOptions(chunk_size, wait=False), lambda r: None).batch_id


def test_cancel_takes_queued_chunks_and_resolves_their_tasks(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch_id = _submit(fake_client, fake_settings, 10, 3)
    report = cancel_batch(fake_client, fake_settings, batch_id)
    assert report.cancelled_chunks == [0, 1, 2, 3] and report.left_chunks == 0
    assert sorted(r.index for r in report.cancelled) == list(range(10))
    assert fake_client.llen(keys.rq_queue_key(fake_settings.queue)) == 0
    assert fake_client.hget(keys.rq_job_key(keys.chunk_job_id(batch_id, 0)), "status") == b"canceled"
    results: list[TaskResult] = []
    summary = await_batch(fake_client, fake_settings, batch_id, results.append, timeout=10)
    assert summary.failed == 10 and {r.error_type for r in results} == {"Cancelled"}
    again = cancel_batch(fake_client, fake_settings, batch_id)  # nothing left to cancel, nothing running
    assert (again.cancelled, again.left_chunks, again.finished_chunks) == ([], 0, 4)


def test_a_worker_answers_a_cancelled_batch_without_running_it(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch_id = _submit(fake_client, fake_settings, 4, 2)
    fake_client.hset(keys.batch_key(batch_id), "cancelled", "1")  # the mark only: chunks stay queued
    runtime.configure(Runtime(fake_settings, default_catalogue, "w"))
    FastChunkWorker(runtime.current(), fake_client, [fake_settings.queue]).work(burst=True, logging_level="WARNING")
    results: list[TaskResult] = []
    await_batch(fake_client, fake_settings, batch_id, results.append, timeout=10)
    assert [(r.error_type, r.worker) for r in results] == [("Cancelled", "w")] * 4


def test_watcher_resolves_a_chunk_marked_canceled(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    # A cancel that died after taking the chunk off the queue, before publishing its results.
    batch_id = _submit(fake_client, fake_settings, 2, 2)
    job_id = keys.chunk_job_id(batch_id, 0)
    fake_client.lrem(keys.rq_queue_key(fake_settings.queue), 0, job_id)
    fake_client.hset(keys.rq_job_key(job_id), "status", "canceled")
    results: list[TaskResult] = []
    await_batch(fake_client, fake_settings, batch_id, results.append, timeout=10)
    assert [r.error_type for r in results] == ["Cancelled", "Cancelled"]


def test_outage_guard_retries_then_gives_up_with_exit_3() -> None:
    settings = Settings.from_env({}, redis_url="redis://:hunter2@db:6379/0", outage_grace=0.6)
    guard = OutageGuard(settings, "b1")
    calls = iter([redis.ConnectionError("down"), redis.TimeoutError("slow"), "value"])

    def flaky() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert guard(flaky) == "value" and guard.outages == 1

    def dead() -> str:
        raise redis.ConnectionError("Connection refused")

    with pytest.raises(RedisUnavailable) as caught:
        guard(dead)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_REDIS
    assert "dispatcher results b1" in message and "hunter2" not in message and "redis://:***@db:6379/0" in message


GOOD_META = {"kept": 1}
"""The meta every test job is enqueued with: a broken field elsewhere must not lose it."""


def _job_hash(fake_client: fakeredis.FakeRedis, **fields: object) -> InertJob:
    queue = Queue("tasks", connection=fake_client, serializer=JSONSerializer)
    job = queue.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id="j1", meta=GOOD_META)
    if fields:
        fake_client.hset(job.key, mapping=fields)  # type: ignore[arg-type]
    return InertJob.fetch("j1", connection=fake_client, serializer=JSONSerializer)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "bogus"},
        {"timeout": "abc"},
        {"created_at": "yesterday"},
        {"retries_left": "x"},
        {"data": zlib.compress(pickle.dumps(("os.system", None, ["true"], {})))},
        {"data": b"\x78\x9c\x01"},
        {"meta": pickle.dumps({"a": 1})},
        {"result": pickle.dumps(1)},
        {"failure_callback_name": "os.system"},
    ],
)
def test_inert_job_loads_a_broken_hash_as_refused(fake_client: fakeredis.FakeRedis, fields: dict[str, object]) -> None:
    job = _job_hash(fake_client, **fields)
    assert isinstance(job.func_name, str) and isinstance(job.args, (list, tuple)) and job.kwargs is not None
    assert job.refusal and "refused" in job.refusal  # data is read lazily, on first use
    # A pickled meta is dropped unread; any other broken field leaves the readable meta as it was.
    assert job.meta == ({} if "meta" in fields else GOOD_META)


def test_inert_job_loads_a_good_hash_unchanged(fake_client: fakeredis.FakeRedis) -> None:
    job = _job_hash(fake_client)
    assert job.refusal is None and job.func_name == "worker.chunk.run_chunk" and job.args == [{"v": 1}]
    assert job.meta == GOOD_META


def test_results_with_nan_arguments_still_encode() -> None:
    result = TaskResult(0, "echo", [math.nan, {"x": math.inf}], {}, None, False, None, "E", "m", "w", 0.0)
    _chunk, (back,) = decode_results(encode_results("w", 0, [result]))
    assert back.args == [None, {"x": None}] and not back.ok


@pytest.mark.parametrize(
    "rows", ["5", "[[1, 2]]", '[["x", null, "t", [], {}, 1, 1, 0]]', '[[0, null, "t", [], {}, 0, "e", 0]]']
)
def test_malformed_result_rows_are_payload_errors(rows: str) -> None:
    with pytest.raises(PayloadError):
        decode_results({"v": "1", "w": "w", "c": "0", "r": rows})


@pytest.mark.parametrize("line", ["add NaN 1", "add 1 Infinity", "add -Infinity 1", "add 1e999 1"])
def test_reader_refuses_non_finite_numbers_in_text(line: str) -> None:
    (item,) = read_tasks([line], "text", 1000)
    assert isinstance(item, BadInput) and "finite" in item.message


@pytest.mark.parametrize("obj", ['{"task": "add", "args": [NaN, 1]}', '{"task": "add", "args": [1e999, 1]}'])
def test_reader_refuses_non_finite_numbers_in_json_lines(obj: str) -> None:
    (item,) = read_tasks([obj], "jsonl", 1000)
    assert isinstance(item, BadInput) and item.error_type == "MalformedInput"
    ok = read_tasks([json.dumps({"task": "add", "args": [1.5, 2]})], "jsonl", 1000)
    assert isinstance(next(ok), TaskSpec)
