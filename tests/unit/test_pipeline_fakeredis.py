"""Submit, run and await a batch in one process on fakeredis, with RQ's real worker loop."""

from __future__ import annotations

import json
from pathlib import Path

import fakeredis
import pytest
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from common import default_catalogue, keys
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.batch import SubmitOptions, await_batch, submit_batch
from dispatcher.reader import BadInput, read_tasks
from dispatcher.watch import BatchWatcher
from worker import runtime
from worker.runner import FastChunkWorker
from worker.runtime import Runtime


def run_worker(client: fakeredis.FakeRedis, settings: Settings, name: str = "w1") -> None:
    runtime.configure(Runtime(settings, default_catalogue, name))
    FastChunkWorker(runtime.current(), client, [settings.queue]).work(burst=True, logging_level="WARNING")


def submit(client: fakeredis.FakeRedis, settings: Settings, lines: list[str], chunk_size: int | None = None) -> str:
    items = read_tasks(lines, "text", settings.max_arg_bytes)
    summary = submit_batch(client, settings, items, SubmitOptions(chunk_size, wait=False), lambda r: None)
    return summary.batch_id


def collect(client: fakeredis.FakeRedis, settings: Settings, batch_id: str) -> list[TaskResult]:
    results: list[TaskResult] = []
    await_batch(client, settings, batch_id, results.append, timeout=30)
    return results


def test_a_batch_runs_end_to_end(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    # An unknown name ("nosuch 1") used to fail here as UnknownTask; it now goes to a queue of its own
    # (common.routing) and waits for a worker that offers it: see tests/unit/test_routing.py.
    lines = [f"add {i} {i}" for i in range(50)] + ["divide 1 0", "add 1", 'echo "unclosed']
    batch_id = submit(fake_client, fake_settings, lines, chunk_size=7)
    run_worker(fake_client, fake_settings)
    results = collect(fake_client, fake_settings, batch_id)

    by_index = {r.index: r for r in results}
    assert len(results) == len(by_index) == 53
    assert all(by_index[i].ok and by_index[i].value == 2 * i and by_index[i].worker == "w1" for i in range(50))
    assert (by_index[50].error_type, by_index[50].error_message) == ("ZeroDivisionError", "division by zero")
    assert by_index[51].error_type == "InvalidArguments"
    assert by_index[52].error_type == "MalformedInput" and by_index[52].worker == "dispatcher"
    record = fake_client.hgetall(keys.batch_key(batch_id))
    assert record[b"state"] == b"submitted" and record[b"total"] == b"53" and record[b"failed"] == b"3"
    assert record[b"chunks"] == b"8"


def test_chunks_are_rq_jobs_with_deterministic_ids_and_json_payloads(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch_id = submit(fake_client, fake_settings, ["add 1 2", "add 3 4", "add 5 6"], chunk_size=2)
    queue = Queue(fake_settings.queue, connection=fake_client)
    assert queue.job_ids == [f"{batch_id}-0", f"{batch_id}-1"]
    data = fake_client.hget(keys.rq_job_key(f"{batch_id}-0"), "data")
    assert data is not None
    func, instance, args, kwargs = json.loads(data)  # plain JSON: RQ's restore reads data that is not zlib
    assert func == keys.CHUNK_FUNCTION and instance is None and kwargs == {}
    assert args[0]["t"] == [[0, None, "add", [1, 2], {}], [1, None, "add", [3, 4], {}]]


def test_a_chunk_that_runs_twice_yields_each_result_once(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch_id = submit(fake_client, fake_settings, [f"add {i} 1" for i in range(10)], chunk_size=5)
    queue = Queue(fake_settings.queue, connection=fake_client, serializer=JSONSerializer)
    payload = json.loads(fake_client.hget(keys.rq_job_key(f"{batch_id}-0"), "data") or b"")[2][0]
    run_worker(fake_client, fake_settings)
    # Re-run the first chunk, as after a crash between publishing and acknowledging.
    queue.enqueue(keys.CHUNK_FUNCTION, payload, job_id=f"{batch_id}-0")
    run_worker(fake_client, fake_settings, name="w2")
    assert fake_client.xlen(keys.results_key(batch_id)) == 3
    results = collect(fake_client, fake_settings, batch_id)
    assert sorted(r.index for r in results) == list(range(10))


def test_a_failed_chunk_resolves_its_tasks_instead_of_hanging(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    batch_id = submit(fake_client, fake_settings, ["add 1 1", "add 2 2", "add 3 3"], chunk_size=2)
    # Chunk 0 is given up by RQ (for example retries exhausted); chunk 1 vanishes (Redis lost it).
    fake_client.hset(keys.rq_job_key(f"{batch_id}-0"), "status", JobStatus.FAILED.value)
    fake_client.delete(keys.rq_job_key(f"{batch_id}-1"))
    fake_client.delete(keys.rq_queue_key(fake_settings.queue))
    results = {r.index: r for r in collect(fake_client, fake_settings, batch_id)}
    assert [results[i].error_type for i in range(3)] == ["ChunkFailed", "ChunkFailed", "TaskLost"]
    assert results[0].task == "add" and results[0].args == [1, 1]
    # The failures are published, so a later reader sees the same outcome.
    again = {r.index: r.error_type for r in collect(fake_client, fake_settings, batch_id)}
    assert again == {0: "ChunkFailed", 1: "ChunkFailed", 2: "TaskLost"}


def test_waiting_with_back_pressure_interleaves_submission_and_results(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    watcher_seen: list[int] = []

    def sink(result: TaskResult) -> None:
        watcher_seen.append(result.index)

    # No worker runs, so a wait with a small in-flight window must stop submitting and time out.
    items = (TaskSpec(i, "add", [i, i]) for i in range(100))
    options = SubmitOptions(chunk_size=10, wait=True, timeout=0.5, max_in_flight=20)
    with pytest.raises(Exception, match="timed out"):
        submit_batch(fake_client, fake_settings, items, options, sink)
    queued = Queue(fake_settings.queue, connection=fake_client).count
    assert queued <= 3  # never more than the window (plus the chunk that crossed it) was enqueued
    batch_id = fake_client.zrange(keys.BATCHES, 0, -1)[0].decode()
    assert fake_client.hget(keys.batch_key(batch_id), "state") == b"aborted"


def test_reattaching_to_an_unknown_batch_is_a_clear_error(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    watcher = BatchWatcher(fake_client, fake_settings, "nope")
    with pytest.raises(Exception, match="no batch 'nope'"):
        watcher.load()


def test_bad_input_lines_are_published_by_the_dispatcher(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    items = [BadInput(0, 1, "MalformedInput", "nonsense")]
    summary = submit_batch(fake_client, fake_settings, items, SubmitOptions(wait=True), lambda r: None)
    assert (summary.total, summary.failed, summary.complete) == (1, 1, True)


def test_planted_jobs_are_refused_and_never_run(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    queue = Queue(fake_settings.queue, connection=fake_client)
    queue.enqueue("os.system", f"touch {marker}", job_id="planted-os")
    queue.enqueue("builtins.eval", f"open({str(marker)!r}, 'w')", job_id="planted-eval")
    batch_id = submit(fake_client, fake_settings, ["add 2 2"])
    run_worker(fake_client, fake_settings)

    assert not marker.exists()
    failed = queue.failed_job_registry.get_job_ids()
    assert {"planted-os", "planted-eval"} <= set(failed)
    assert {r.value for r in collect(fake_client, fake_settings, batch_id)} == {4}


def test_failure_sweeps_are_bounded_and_reach_every_chunk(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dispatcher import stalls

    monkeypatch.setattr(stalls, "STATUS_CHECKS_PER_SWEEP", 3)
    batch_id = submit(fake_client, fake_settings, [f"add {i} 0" for i in range(10)], chunk_size=1)
    fake_client.delete(*[keys.rq_job_key(f"{batch_id}-{n}") for n in range(10)])  # every chunk vanished
    watcher = BatchWatcher(fake_client, fake_settings, batch_id)
    watcher.load()
    resolved: list[int] = []
    for _ in range(4):
        before = len(resolved)
        resolved += [r.index for r in watcher.check_stalled(force=True)]
        assert len(resolved) - before <= 3
    assert sorted(resolved) == list(range(10)) and watcher.complete


def test_a_reader_settles_for_what_a_dead_submitter_sent(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    from dispatcher.submit import BatchSubmitter

    submitter = BatchSubmitter(fake_client, fake_settings, "halfway", chunk_size=2)
    submitter.start("test")
    for i in range(0, 6, 2):
        submitter.add_chunk([TaskSpec(i, "add", [i, 1]), TaskSpec(i + 1, "add", [i + 1, 1])])
    submitter.flush()
    run_worker(fake_client, fake_settings)
    # While the submitter's lease lives, the batch may still grow: a reader keeps waiting.
    with pytest.raises(Exception, match="timed out"):
        await_batch(fake_client, fake_settings, "halfway", lambda r: None, timeout=0.5)
    # The submitting process died without finishing: its lease runs out.
    fake_client.delete(keys.submitter_key("halfway"))
    results: list[TaskResult] = []
    summary = await_batch(fake_client, fake_settings, "halfway", results.append, timeout=10)
    assert summary.total == 6 and sorted(r.index for r in results) == list(range(6))


def test_a_finished_batch_drops_its_submitter_lease(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    batch_id = submit(fake_client, fake_settings, ["add 1 1"])
    assert not fake_client.exists(keys.submitter_key(batch_id))
    assert fake_client.hget(keys.batch_key(batch_id), "sent") == b"1"
