"""Crash isolation's bookkeeping on fakeredis: what each death blames, the careful re-run, the counters."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import fakeredis
import pytest
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from common import Catalogue, Settings, default_catalogue, keys
from common.crash import (
    CRASHED_META,
    RUNNING_FIELD,
    CrashRecord,
    Death,
    describe_exit,
    note_abandoned,
    note_running,
    running_marker,
    worker_died_message,
)
from common.events import TASKS_DIED, TASKS_RETRIED, WORKERS_LOST, count_event, recent_events
from common.jobs import ABANDONMENT_HANDLERS, InertJob
from common.wire import ChunkPayload, TaskRow, TaskSpec, decode_results, encode_chunk
from worker import running
from worker import runtime as runtime_module
from worker.careful import run_careful, waves
from worker.deathnote import DeathNotes
from worker.execute import Watchdog
from worker.publish import ResultPublisher
from worker.running import IDLE, JOB_ID_BYTES, Board, Running
from worker.runtime import Runtime
from worker.serial import run_serial
from worker.supervisor import Supervisor

JOB = "b1-0"


def mark(client: fakeredis.FakeRedis, indices: list[int], worker: str = "wa", pid: int = 4242) -> str:
    marker = running_marker(indices, worker, "host-a", pid)
    client.hset(keys.crash_key(JOB), RUNNING_FIELD, marker)
    return marker


def test_a_death_that_nobody_saw_blames_nobody(fake_client: fakeredis.FakeRedis) -> None:
    """An ordinary run writes no marker: without its supervisor's (killed with it), nothing is blamed."""
    assert note_abandoned(fake_client, JOB, 60) is False
    record = CrashRecord.load(fake_client, JOB)
    assert (record.deaths, record.blame, record.suspects) == (1, {}, set())
    assert recent_events(fake_client)[WORKERS_LOST] == 1


def test_a_death_while_one_task_ran_blames_it_with_the_supervisors_note(fake_client: fakeredis.FakeRedis) -> None:
    fake_client.set(keys.death_key("host-a", 4242), describe_exit(-11))
    mark(fake_client, [7])
    assert note_abandoned(fake_client, JOB, 60) is True
    mark(fake_client, [7], worker="wb", pid=99)  # no note: killed with its supervisor
    assert note_abandoned(fake_client, JOB, 60) is True
    record = CrashRecord.load(fake_client, JOB)
    assert record.blame == {7: [Death("wa", "signal 11 SIGSEGV"), Death("wb", None)]}
    assert record.deaths == 2 and not fake_client.hexists(keys.crash_key(JOB), RUNNING_FIELD)
    assert not record.judged(7, 3) and record.judged(7, 2) and not record.judged(8, 1)
    assert worker_died_message(record.blame[7]) == (
        "the worker process died while running this task (signal 11 SIGSEGV; exit status unknown: no supervisor "
        "saw the process end) on wa, wb"
    )
    assert 0 < fake_client.ttl(keys.crash_key(JOB)) <= 60


def test_two_sweepers_recovering_one_death_blame_once(fake_client: fakeredis.FakeRedis) -> None:
    marker = mark(fake_client, [3])
    assert note_abandoned(fake_client, JOB, 60) is True
    fake_client.hset(keys.crash_key(JOB), RUNNING_FIELD, marker)  # read by the second sweeper before the first ran
    fake_client.hdel(keys.crash_key(JOB), RUNNING_FIELD)
    assert note_abandoned(fake_client, JOB, 60) is False
    assert len(CrashRecord.load(fake_client, JOB).blame[3]) == 1


def test_a_death_during_a_wave_makes_its_tasks_suspects(fake_client: fakeredis.FakeRedis) -> None:
    mark(fake_client, [1, 2, 3])
    assert note_abandoned(fake_client, JOB, 60) is True
    record = CrashRecord.load(fake_client, JOB)
    assert record.suspects == {1, 2, 3} and record.blame == {}


def test_a_foreign_marker_blames_nobody(fake_client: fakeredis.FakeRedis) -> None:
    fake_client.hset(keys.crash_key(JOB), RUNNING_FIELD, "not json")
    assert note_abandoned(fake_client, JOB, 60) is False


def test_exit_statuses_are_named() -> None:
    assert describe_exit(-11) == "signal 11 SIGSEGV"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-200) == "signal 200"


def spec(index: int) -> TaskSpec:
    return TaskSpec(index, "add", [index, 0], {}, None)


def test_waves_run_suspects_alone_and_the_rest_as_wide_as_the_slots() -> None:
    specs = [spec(i) for i in range(7)]
    assert [[s.index for s in w] for w in waves(specs, {2}, 3)] == [[0, 1], [2], [3, 4, 5], [6]]
    assert [[s.index for s in w] for w in waves(specs, set(), 1)] == [[i] for i in range(7)]


def abandon(client: fakeredis.FakeRedis, retries: int) -> InertJob:
    """A chunk job in the started registry whose worker died long ago; RQ's cleanup recovers it."""
    queue = Queue("tasks", connection=client, serializer=JSONSerializer, job_class=InertJob)
    job = queue.enqueue_call(keys.CHUNK_FUNCTION, args=({"b": 1},), job_id=JOB, retry=Retry(max=retries), ttl=600)
    client.lrem(queue.key, 0, JOB)
    client.hset(job.key, "status", "started")  # RQ 3's cleanup recovers only jobs still started
    client.zadd(queue.started_job_registry.key, {f"{JOB}:exec1": 1})
    queue.started_job_registry.cleanup(exception_handlers=ABANDONMENT_HANDLERS)
    restored = InertJob.fetch(JOB, connection=client, serializer=JSONSerializer)
    assert isinstance(restored, InertJob)
    assert job.id == restored.id
    return restored


def test_recovery_marks_the_rerun_careful_and_a_blaming_death_costs_no_retry(
    fake_client: fakeredis.FakeRedis,
) -> None:
    mark(fake_client, [5])
    job = abandon(fake_client, retries=1)
    assert job.meta[CRASHED_META] is True and job.retries_left == 1 and job.get_status() == "queued"
    assert CrashRecord.load(fake_client, JOB).blame == {5: [Death("wa", None)]}


def test_a_death_that_blames_nobody_costs_a_retry(fake_client: fakeredis.FakeRedis) -> None:
    job = abandon(fake_client, retries=1)
    assert job.meta[CRASHED_META] is True and job.retries_left == 0 and job.get_status() == "queued"


def careful_runtime(threads: int = 1) -> Runtime:
    return Runtime(Settings.from_env({}, crash_limit=2), default_catalogue, "wc", threads=threads)


@pytest.mark.parametrize("threads", [1, 3])
def test_the_careful_run_fails_the_judged_task_and_runs_the_rest_marked(
    fake_client: fakeredis.FakeRedis, threads: int
) -> None:
    client = fake_client
    for who in ("wa", "wb"):
        mark(client, [2], worker=who)
        note_abandoned(client, JOB, 60)
    mark(client, [4])  # one death only: runs again
    note_abandoned(client, JOB, 60)
    markers: list[str] = []
    real_flush = ResultPublisher.flush_with

    def spy(self: ResultPublisher, extra: object) -> None:
        real_flush(self, extra)  # type: ignore[arg-type]
        markers.append((client.hget(keys.crash_key(JOB), RUNNING_FIELD) or b"").decode())

    chunk = ChunkPayload("b1", 0, 60, [[i, None, "add", [i, 1], {}] for i in range(6)])
    publisher = ResultPublisher(client, "b1", 0, 60, "wc")
    runtime = careful_runtime(threads)
    try:
        ResultPublisher.flush_with = spy  # type: ignore[method-assign]
        run_careful(JOB, chunk, runtime, publisher, client)
    finally:
        ResultPublisher.flush_with = real_flush  # type: ignore[method-assign]
        pool = runtime.pool()
        if pool is not None:
            pool.close()
    publisher.finish()
    results = {r.index: r for _id, fields in client.xrange(keys.results_key("b1")) for r in decode_results(fields)[1]}
    assert set(results) == set(range(6))
    assert results[2].error_type == "WorkerDied" and "on wa, wb" in (results[2].error_message or "")
    assert all(results[i].ok and results[i].value == i + 1 for i in (0, 1, 3, 4, 5))
    waves_run = [json.loads(m)["tasks"] for m in markers[:-1]]
    assert markers[-1] == "" and not client.exists(keys.crash_key(JOB))  # the record goes with the chunk
    assert [4] in waves_run and all(len(w) <= threads for w in waves_run) and all(2 not in w for w in waves_run)
    assert json.loads(markers[0])["host"] == socket.gethostname()
    events = recent_events(client)
    assert (events[TASKS_DIED], events[TASKS_RETRIED], events[WORKERS_LOST]) == (1, 5, 3)


def test_events_are_summed_over_the_last_hour_only(fake_client: fakeredis.FakeRedis) -> None:
    now = 1_000_000_000.0
    count_event(fake_client, WORKERS_LOST, now=now - 3700)  # more than an hour ago
    count_event(fake_client, WORKERS_LOST, 2, now=now - 3000)
    pipe = fake_client.pipeline()
    count_event(pipe, TASKS_RETRIED, 61, now=now)
    pipe.execute()
    assert recent_events(fake_client, now=now) == {TASKS_RETRIED: 61, WORKERS_LOST: 2, TASKS_DIED: 0}
    assert 0 < fake_client.ttl(keys.events_key(int(now // 60))) <= keys.EVENTS_TTL


def test_a_careful_run_stopped_by_a_shutdown_leaves_no_marker_to_blame(fake_client: fakeredis.FakeRedis) -> None:
    catalogue = Catalogue()

    @catalogue.register
    def stopped(n: int) -> int:
        raise SystemExit(1)  # what RQ's cold shutdown raises in the running task

    runtime = Runtime(Settings.from_env({}), catalogue, "wc")
    chunk = ChunkPayload("b1", 0, 60, [[0, None, "stopped", [0], {}]])
    with pytest.raises(SystemExit):
        run_careful(JOB, chunk, runtime, ResultPublisher(fake_client, "b1", 0, 60, "wc"), fake_client)
    assert not fake_client.hexists(keys.crash_key(JOB), RUNNING_FIELD)
    assert note_abandoned(fake_client, JOB, 60) is False


def test_a_chunk_of_judged_tasks_only_runs_nothing_and_counts_them(fake_client: fakeredis.FakeRedis) -> None:
    for who in ("wa", "wb"):
        mark(fake_client, [0], worker=who)
        note_abandoned(fake_client, JOB, 60)
    publisher = ResultPublisher(fake_client, "b1", 0, 60, "wc")
    chunk = ChunkPayload("b1", 0, 60, [[0, None, "add", [0, 1], {}]])
    run_careful(JOB, chunk, careful_runtime(), publisher, fake_client)
    publisher.finish()
    (_id, fields), *_ = fake_client.xrange(keys.results_key("b1"))
    assert [r.error_type for r in decode_results(fields)[1]] == ["WorkerDied"]
    assert recent_events(fake_client)[TASKS_DIED] == 1


def test_the_supervisors_death_note_is_found_by_the_recovery(fake_client: fakeredis.FakeRedis) -> None:
    notes = DeathNotes(Settings.from_env({}))
    notes._client = fake_client  # what connect() would build, on fakeredis
    notes(4242, -11)
    fake_client.hset(keys.crash_key(JOB), RUNNING_FIELD, running_marker([1], "wa", socket.gethostname(), 4242))
    note_abandoned(fake_client, JOB, 60)
    assert CrashRecord.load(fake_client, JOB).blame[1] == [Death("wa", "signal 11 SIGSEGV")]
    assert 0 < fake_client.ttl(keys.death_key(socket.gethostname(), 4242)) <= keys.DEATH_NOTE_TTL


def test_a_careful_run_retries_a_task_that_declares_retries(fake_client: fakeredis.FakeRedis) -> None:
    catalogue = Catalogue()
    calls: list[int] = []

    @catalogue.register(retries=2, retry_on=(OSError,), backoff=0.001, max_backoff=0.001)
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) < 2:
            raise OSError("not yet")
        return n

    publisher = ResultPublisher(fake_client, "b1", 0, 60, "wc")
    chunk = ChunkPayload("b1", 0, 60, [[0, None, "flaky", [5], {}]])
    run_careful(JOB, chunk, Runtime(Settings.from_env({}), catalogue, "wc"), publisher, fake_client)
    publisher.finish()
    (_id, fields), *_ = fake_client.xrange(keys.results_key("b1"))
    (only,) = decode_results(fields)[1]
    assert (only.ok, only.value, only.attempts, len(calls)) == (True, 5, 2, 2)


def test_the_first_death_of_a_supervised_process_blames_the_task_it_was_running(
    fake_client: fakeredis.FakeRedis,
) -> None:
    notes = DeathNotes(Settings.from_env({}))
    notes._client = fake_client
    notes(4242, -11, "wa", Running(JOB, [7]))  # what the supervisor read from the child's board
    assert 0 < fake_client.ttl(keys.crash_key(JOB)) <= keys.DEATH_NOTE_TTL
    assert note_abandoned(fake_client, JOB, 60) is True
    record = CrashRecord.load(fake_client, JOB)
    assert record.blame == {7: [Death("wa", "signal 11 SIGSEGV")]} and record.deaths == 1
    assert record.judged(7, 1) and 0 < fake_client.ttl(keys.crash_key(JOB)) <= 60


def test_the_first_death_with_several_tasks_running_names_them_suspects(fake_client: fakeredis.FakeRedis) -> None:
    note_running(fake_client, JOB, [9, 2], "wa", "host-a", 4242, 60)
    assert note_abandoned(fake_client, JOB, 60) is True
    record = CrashRecord.load(fake_client, JOB)
    assert record.suspects == {2, 9} and record.blame == {}


def test_a_careful_waves_marker_is_kept_over_the_supervisors(fake_client: fakeredis.FakeRedis) -> None:
    wave = mark(fake_client, [1, 2, 3])
    fake_client.expire(keys.crash_key(JOB), 600)
    note_running(fake_client, JOB, [2], "wa", "host-a", 4242, 60)
    assert fake_client.hget(keys.crash_key(JOB), RUNNING_FIELD) == wave.encode()
    assert fake_client.ttl(keys.crash_key(JOB)) > 60  # the record's own TTL is left alone


def test_a_death_between_tasks_or_without_a_board_marks_nothing(fake_client: fakeredis.FakeRedis) -> None:
    notes = DeathNotes(Settings.from_env({}))
    notes._client = fake_client
    notes(4242, 3, "wa", None)
    assert not fake_client.exists(keys.crash_key(JOB))
    board = Board(2)
    board.begin(JOB)
    assert board.read() is None  # every slot idle: nothing to blame
    board.tasks[1] = 5
    assert board.read() == Running(JOB, [5])
    board.begin("x" * (JOB_ID_BYTES + 1))
    board.tasks[0] = 5
    assert board.read() is None  # an id too long to hold: blame nobody rather than a wrong chunk


def _dies_running(index: int) -> None:
    running.begin(f"chunk-{index}", 3)
    board = running.tasks()
    board[0], board[2] = 4, 11
    os._exit(1)


def test_the_supervisor_reads_what_its_dead_child_was_running() -> None:
    seen: list[Running | None] = []
    supervisor: Supervisor

    def hook(index: int, _pid: int, _code: int, _stopping: bool) -> None:
        seen.append(supervisor.running(index))

    supervisor = Supervisor(1, _dies_running, respawn=False, on_exit=hook, board_slots=3)
    assert supervisor.run() == 1
    assert seen == [Running("chunk-0", [4, 11])]


def _board_catalogue(seen: list[list[int]]) -> Catalogue:
    catalogue = Catalogue()

    @catalogue.register
    def peek(n: int) -> int:
        seen.append([i for i in running.tasks() if i != IDLE])
        return n

    @catalogue.register
    async def apeek(n: int) -> int:
        await asyncio.sleep(0.01)  # so that the async slots overlap
        seen.append([i for i in running.tasks() if i != IDLE])
        return n

    return catalogue


def test_the_serial_loop_records_each_task_while_it_runs(fake_client: fakeredis.FakeRedis) -> None:
    seen: list[list[int]] = []
    catalogue = _board_catalogue(seen)
    publisher = ResultPublisher(fake_client, "b1", 0, 60, "wc")
    running.begin(JOB, 1)
    rows: list[TaskRow] = [
        [0, None, "peek", [0], {}],
        [1, None, "peek", [], {"n": 1}],
        [2, None, "peek", [2], {}],
    ]
    with Watchdog(60) as watchdog:
        run_serial(rows, catalogue, Settings.from_env({}), "wc", watchdog, publisher)
    assert seen == [[0], [1], [2]]  # the fast path, the long way (execute_task), the fast path again
    assert all(i == IDLE for i in running.tasks())


@pytest.mark.parametrize("threads, async_slots", [(3, 0), (1, 4)])
def test_thread_and_async_slots_record_their_running_tasks(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    seen: list[list[int]] = []
    catalogue = _board_catalogue(seen)
    task = "apeek" if async_slots else "peek"
    runtime = Runtime(Settings.from_env({}), catalogue, "wc", threads=threads, async_slots=async_slots)
    specs = [TaskSpec(i, task, [i], {}, None) for i in range(8)]
    try:
        pool = runtime.pool()
        assert pool is not None
        pool.run(specs, runtime.context, ResultPublisher(fake_client, "b1", 0, 60, "wc"))
    finally:
        pool.close()
    assert len(seen) == 8 and all(1 <= len(now) <= max(threads, async_slots) for now in seen)
    assert set().union(*map(set, seen)) == set(range(8))
    if async_slots:
        assert max(len(now) for now in seen) > 1  # the slots ran side by side, each in its own place
    assert all(i == IDLE for i in running.tasks())


def test_a_chunk_stopped_by_a_shutdown_leaves_no_running_task(fake_client: fakeredis.FakeRedis) -> None:
    catalogue = Catalogue()

    @catalogue.register
    def stopped(n: int) -> int:
        raise SystemExit(1)  # what RQ's cold shutdown raises in the running task

    queue = Queue("tasks", connection=fake_client, serializer=JSONSerializer, job_class=InertJob)
    payload = encode_chunk("b1", 0, 60, [TaskSpec(0, "stopped", [], {"n": 5}, None)])
    job = queue.enqueue_call(keys.CHUNK_FUNCTION, args=(payload,), job_id=JOB)
    runtime_module.configure(Runtime(Settings.from_env({}), catalogue, "wc"))
    try:
        with pytest.raises(SystemExit):
            job.perform()
    finally:
        runtime_module.reset()
    assert all(i == IDLE for i in running.tasks())
