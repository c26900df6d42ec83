"""Chunk jobs written from the template are the jobs RQ's own enqueue writes (fakeredis with Lua)."""

from __future__ import annotations

import json
import zlib
from typing import Any

import fakeredis
import pytest
import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from common import keys
from common.jobdata import ORJSON_MARK, encode_job_data
from common.jobs import InertJob
from common.settings import Settings
from common.wire import TaskSpec, decode_chunk, encode_chunk
from dispatcher import enqueue
from dispatcher.enqueue import ChunkJobWriter, _lua_string
from dispatcher.session import Session
from dispatcher.submit import BatchSubmitter
from worker.job import SafeJob

TIMESTAMPS = {b"created_at", b"enqueued_at"}


def rq_enqueue(
    client: fakeredis.FakeRedis, settings: Settings, batch_id: str, chunk: int, tasks: list[TaskSpec]
) -> None:
    """A chunk job through RQ's own path, with the arguments the submitter used to give it."""
    queue = Queue(settings.queue, connection=client, serializer=JSONSerializer)
    ttl = settings.result_ttl
    job = queue.prepare_data(
        keys.CHUNK_FUNCTION,
        args=(encode_chunk(batch_id, chunk, ttl, tasks),),
        job_id=keys.chunk_job_id(batch_id, chunk),
        timeout=-1,
        result_ttl=0,
        failure_ttl=ttl,
        ttl=ttl,
        description=f"batch {batch_id} chunk {chunk} ({len(tasks)} tasks)",
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
    )
    queue.enqueue_many([job])


def ours(client: fakeredis.FakeRedis, settings: Settings, batch_id: str, tasks: list[TaskSpec]) -> BatchSubmitter:
    submitter = BatchSubmitter(client, settings, batch_id, chunk_size=len(tasks))
    submitter.start("test")
    submitter.add_chunk(tasks)
    submitter.flush()
    return submitter


def tasks_of(n: int) -> list[TaskSpec]:
    return [TaskSpec(i, "add", [i, i], {"k": "é"} if i % 2 else {}, f"id{i}" if i % 3 else None) for i in range(n)]


@pytest.mark.parametrize("retries", [0, 3])
def test_the_job_hash_has_exactly_rqs_fields_and_values(fake_client: fakeredis.FakeRedis, retries: int) -> None:
    settings = Settings.from_env({}, redis_url="redis://fake", job_retries=retries, result_ttl=1234, queue="q.a:b-c")
    tasks = tasks_of(3)
    rq_enqueue(fake_client, settings, "theirs", 0, tasks)
    ours(fake_client, settings, "mine", tasks)
    theirs: dict[bytes, bytes] = fake_client.hgetall(keys.rq_job_key("theirs-0"))  # type: ignore[assignment]
    mine: dict[bytes, bytes] = fake_client.hgetall(keys.rq_job_key("mine-0"))  # type: ignore[assignment]

    assert set(mine) == set(theirs)
    same = {b"data", b"description", *TIMESTAMPS}
    assert {k: v for k, v in mine.items() if k not in same} == {k: v for k, v in theirs.items() if k not in same}
    assert mine[b"description"] == theirs[b"description"].replace(b"theirs", b"mine")
    assert mine[b"created_at"] == mine[b"enqueued_at"] and len(mine[b"created_at"]) == len(theirs[b"created_at"])
    mine_call = json.loads(mine[b"data"])
    their_call = json.loads(zlib.decompress(theirs[b"data"]))
    mine_call[2][0]["b"] = their_call[2][0]["b"] = "x"
    mine_call[2][0].pop(ORJSON_MARK, None)  # our payload may say orjson wrote it (common/jobdata.py)
    assert mine_call == their_call
    assert fake_client.ttl(keys.rq_job_key("mine-0")) == fake_client.ttl(keys.rq_job_key("theirs-0")) == 1234
    assert fake_client.lrange(keys.rq_queue_key("q.a:b-c"), 0, -1) == [b"theirs-0", b"mine-0"]
    assert fake_client.smembers(keys.RQ_QUEUES) == {keys.rq_queue_key("q.a:b-c").encode()}


def test_rq_and_our_workers_load_the_job_as_rq_wrote_it(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    tasks = tasks_of(4)
    ours(fake_client, fake_settings, "b1", tasks)
    for job_class in (Job, InertJob, SafeJob):
        job = job_class.fetch("b1-0", connection=fake_client, serializer=JSONSerializer)
        assert job.func_name == keys.CHUNK_FUNCTION and job.instance is None and job.kwargs == {}
        assert decode_chunk(job.args[0]).tasks == tasks
        assert (job.timeout, job.result_ttl, job.failure_ttl, job.ttl) == (-1, 0, 86_400, 86_400)
        assert (job.retries_left, job.retry_intervals, job.origin) == (3, [0], "tasks")
        assert job.get_status(refresh=False) == JobStatus.QUEUED and job.enqueued_at is not None
        assert job.description == "batch b1 chunk 0 (4 tasks)"
    safe = SafeJob.fetch("b1-0", connection=fake_client, serializer=JSONSerializer)
    assert safe.func.__module__ == "worker.chunk" and safe.refusal is None
    assert Queue("tasks", connection=fake_client).job_ids == ["b1-0"]


def test_job_data_is_plain_json_that_zlib_never_mistakes_for_its_own() -> None:
    data = encode_job_data(encode_chunk("b", 0, 10, tasks_of(2)))
    with pytest.raises(zlib.error):
        zlib.decompress(data)  # what Job.restore tries first; it then keeps the data as it is
    assert json.loads(data)[0] == keys.CHUNK_FUNCTION


@pytest.mark.parametrize("arg", [2**70, {1: "int key"}, "\ud800"])
def test_what_orjson_refuses_goes_through_rqs_json_serializer(arg: Any) -> None:
    data = encode_job_data({"a": [arg]})
    assert JSONSerializer.loads(data) == JSONSerializer.loads(
        JSONSerializer.dumps([keys.CHUNK_FUNCTION, None, [{"a": [arg]}], {}])
    )


def test_what_json_cannot_carry_still_fails_before_anything_is_sent() -> None:
    with pytest.raises(TypeError):
        encode_job_data({"a": {1, 2}})


def test_a_big_flush_is_split_into_calls_each_setting_sent_to_what_it_brings(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enqueue, "JOBS_PER_SCRIPT", 2)
    writer = ChunkJobWriter(fake_settings, "big")
    jobs = [writer.job(c, c * 3, c * 3 + 2, 3, {"c": c}) for c in range(5)]
    calls = writer.calls(10, 42, jobs)
    assert len(calls) == 3
    assert [call[3 + call[2]] for call in calls] == [16, 22, 25]  # ARGV[1] of each call: sent
    writer.send(fake_client, calls)
    assert fake_client.hget(keys.batch_key("big"), "sent") == b"25"
    assert fake_client.lrange(keys.chunks_key("big"), 0, -1) == [f"{c * 3}:{c * 3 + 2}:3".encode() for c in range(5)]
    assert fake_client.lrange(keys.rq_queue_key("tasks"), 0, -1) == [f"big-{c}".encode() for c in range(5)]
    assert fake_client.get(keys.submitter_key("big")) == b"42"


def test_redis_that_lost_the_script_gets_it_again(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter = ours(fake_client, fake_settings, "s1", tasks_of(1))
    fake_client.script_flush()
    submitter.add_chunk([TaskSpec(1, "add", [1, 1])])
    submitter.flush()
    assert submitter.chunks == 2 and fake_client.lrange(keys.rq_queue_key("tasks"), 0, -1) == [b"s1-0", b"s1-1"]
    assert fake_client.hget(keys.batch_key("s1"), "sent") == b"2"


def test_lua_string_literals_carry_any_text(fake_client: fakeredis.FakeRedis) -> None:
    for text in ["plain_tasks", "q.a:b-c", 'it\'s "quoted" \\ ]] --[[ é\n\0', "-1", ""]:
        assert fake_client.eval(f"return {_lua_string(text)}", 0) == text.encode()


def test_a_session_call_enqueues_and_reads_on_its_own_connection(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_pipeline_fakeredis import run_worker

    with Session(fake_client, fake_settings) as session:
        with pytest.raises(Exception, match="no result for task 0"):
            session.call("add", 2, 3, timeout=0.05)  # no worker yet: the job is queued, the read times out
        assert fake_client.lrange(keys.rq_queue_key("tasks"), 0, -1) == [f"{session.batch_id}-0".encode()]

        def broken(*_args: Any) -> list[Any]:
            raise redis.ConnectionError("connection reset")

        monkeypatch.setattr(session._direct, "round_trip", broken)
        with pytest.raises(Exception, match="no result for task 1"):
            session.call("add", 4, 5, timeout=0.05)  # the client's pipeline took over
        run_worker(fake_client, fake_settings)
        assert (session.result(0, timeout=5).value, session.result(1, timeout=5).value) == (5, 9)
    record = fake_client.hgetall(keys.batch_key(session.batch_id))
    assert record[b"sent"] == record[b"total"] == b"2" and record[b"chunks"] == b"2"
