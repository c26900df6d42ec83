"""RedisExecutor against a real redis-server and real worker processes serving a user task module."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis

from common import keys
from common.builtin_tasks import add, divide
from common.errors import RemoteTaskError, RemoteTraceback, TaskNotOffered
from dispatcher import RedisExecutor
from tests import usertasks
from tests.conftest import ROOT, WorkerFactory, run_cli
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

USER_ENV = {"PYTHONPATH": str(ROOT)}


def wait_offered(client: redis.Redis, name: str, workers: int = 1, timeout: float = 30) -> None:
    """Until `workers` live workers advertise `name` (their advertisement follows RQ's registration)."""

    def offered() -> bool:
        members = client.smembers(keys.RQ_WORKERS)
        return len([k for k in members if name in json.loads(client.hget(k, "dw_tasks") or b"[]")]) >= workers

    wait_until(offered, timeout, f"{workers} worker(s) to advertise {name!r}")


@pytest.fixture
def user_workers(start_worker: WorkerFactory, real_client: redis.Redis) -> Callable[[int], None]:
    def start(count: int) -> None:
        for _ in range(count):
            # --tasks is repeatable (the second module is already loaded: harmless, and proves the flag)
            start_worker("--tasks", "tests.usertasks", "--tasks", "common.builtin_tasks", env=USER_ENV)
        wait_offered(real_client, "images.resize", count)

    return start


def test_submit_by_function_or_name_and_remote_errors(redis_url: str, user_workers: Callable[[int], None]) -> None:
    user_workers(2)
    with RedisExecutor(redis_url) as executor:
        assert executor.submit(add, 2, 3).result(timeout=30) == 5
        assert executor.submit(usertasks.resize, "a.png", 100).result(timeout=30) == "a.png@100w"
        assert executor.submit("images.resize", "b.png", width=7).result(timeout=30) == "b.png@7w"

        with pytest.raises(RemoteTaskError) as info:
            executor.submit(usertasks.explode, "kaboom").result(timeout=30)
        error = info.value
        assert (error.remote_type, error.remote_message, error.task) == ("RuntimeError", "kaboom", "usertasks.explode")
        assert error.remote_traceback is not None
        assert "_deeper" in error.remote_traceback and "usertasks.py" in error.remote_traceback
        assert isinstance(error.__cause__, RemoteTraceback)

        with pytest.raises(RemoteTaskError) as bad_args:
            executor.submit(usertasks.resize, "a.png", "wide").result(timeout=30)
        assert bad_args.value.remote_type == "InvalidArguments"
        assert "'width' must be int" in bad_args.value.remote_message


def test_wait_and_as_completed(redis_url: str, user_workers: Callable[[int], None]) -> None:
    user_workers(2)
    with RedisExecutor(redis_url) as executor:
        futures = [executor.submit(usertasks.double, i) for i in range(40)]
        done, not_done = cf.wait(futures, timeout=60)
        assert not not_done and len(done) == 40
        more = {executor.submit("usertasks.double", i): i for i in range(40, 60)}
        seen = {more[f]: f.result() for f in cf.as_completed(more, timeout=60)}
        assert seen == {i: 2 * i for i in range(40, 60)}
        first_error = cf.wait(
            [executor.submit(divide, 1, 0), executor.submit(add, 1, 1)], timeout=60, return_when=cf.FIRST_EXCEPTION
        )
        assert first_error.done


def test_map_streams_a_generator_with_a_bounded_window(redis_url: str, user_workers: Callable[[int], None]) -> None:
    user_workers(2)
    window, chunk, total = 40, 10, 3000
    produced = 0

    def numbers() -> Iterator[int]:
        nonlocal produced
        for i in range(total):
            produced += 1
            yield i

    with RedisExecutor(redis_url, max_in_flight=window) as executor:
        results = executor.map(usertasks.double, numbers(), chunksize=chunk)
        assert produced <= window  # the first window is submitted by map() itself, nothing more
        ahead = 0
        for consumed, value in enumerate(results, start=1):
            assert value == 2 * (consumed - 1)  # input order
            ahead = max(ahead, produced - consumed)
        assert consumed == total == produced
        assert ahead <= window  # never more than the window read ahead of what was consumed


def test_map_several_iterables_and_the_first_failure(redis_url: str, user_workers: Callable[[int], None]) -> None:
    user_workers(1)
    with RedisExecutor(redis_url) as executor:
        assert list(executor.map(add, range(500), itertools.count(1000))) == [i + i + 1000 for i in range(500)]
        results = executor.map(divide, [1, 2, 3], [1, 0, 1])
        assert next(results) == 1.0
        with pytest.raises(RemoteTaskError, match="ZeroDivisionError"):
            next(results)


def test_the_batch_shows_in_status_and_results(redis_url: str, user_workers: Callable[[int], None]) -> None:
    user_workers(1)
    executor = RedisExecutor(redis_url)
    assert [f.result(timeout=30) for f in [executor.submit(add, i, 1) for i in range(5)]] == [1, 2, 3, 4, 5]
    open_batch = _batch(redis_url, executor.batch_id)
    assert open_batch["state"] == "open" and open_batch["total"] is None and open_batch["done"] == 5
    # While open, the batch has no total: a reader gets what is there, then waits (here: times out).
    so_far = run_cli("results", executor.batch_id, "--json", "--timeout", "1", env={"REDIS_URL": redis_url})
    assert so_far.returncode == 4 and len(so_far.stdout.splitlines()) == 5
    assert list(executor.map(add, [10, 20], [1, 2])) == [11, 22]
    executor.shutdown()
    finished = _batch(redis_url, executor.batch_id)
    assert (finished["state"], finished["total"], finished["done"]) == ("finished", 7, 7)

    reattached = run_cli("results", executor.batch_id, "--json", "--ordered", env={"REDIS_URL": redis_url})
    assert reattached.returncode == 0, reattached.stderr
    rows = [json.loads(line) for line in reattached.stdout.splitlines()]
    assert [row["result"] for row in rows] == [1, 2, 3, 4, 5, 11, 22]


def _batch(redis_url: str, batch_id: str) -> dict[str, object]:
    status = run_cli("status", "--json", env={"REDIS_URL": redis_url})
    assert status.returncode == 0, status.stderr
    batches = {b["batch_id"]: b for b in json.loads(status.stdout)["batches"]}
    return batches[batch_id]  # type: ignore[no-any-return]


def test_refuses_a_task_no_live_worker_offers(
    redis_url: str, real_client: redis.Redis, user_workers: Callable[[int], None]
) -> None:
    user_workers(1)
    with RedisExecutor(redis_url) as executor:
        with pytest.raises(TaskNotOffered) as info:
            executor.submit("thumbnails.make", "a.png")
        assert "images.resize" in str(info.value) and "add" in str(info.value)
        with pytest.raises(TaskNotOffered):
            executor.map("thumbnails.make", ["a.png"])
    assert real_client.llen(keys.rq_queue_key("tasks")) == 0
    assert real_client.zcard("dw:batches") == 0  # nothing at all was written

    # Behaviour changed: unchecked, the task used to be taken by a worker that failed it as UnknownTask;
    # it now waits in its own queue for a worker that offers it (common.routing).
    unchecked = RedisExecutor(redis_url, check_tasks=False)
    waiting = unchecked.submit("thumbnails.make", "a.png")
    with pytest.raises(cf.TimeoutError):
        waiting.result(timeout=1)
    assert real_client.llen(keys.rq_queue_key("tasks@thumbnails.make")) == 1
    unchecked.shutdown(wait=True, cancel_futures=True)
    assert waiting.cancelled() and real_client.llen(keys.rq_queue_key("tasks@thumbnails.make")) == 0


def test_shutdown_cancels_queued_work_and_the_batch_completes(redis_url: str, real_client: redis.Redis) -> None:
    executor = RedisExecutor(redis_url, check_tasks=False)  # no worker yet: everything stays queued
    futures = [executor.submit(add, i, i) for i in range(5)]
    mapped = executor.map(add, range(20), range(20), chunksize=4)
    with pytest.raises(cf.TimeoutError):
        executor.map(add, [1], [2], timeout=0.3).__next__()
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)
    with pytest.raises(cf.CancelledError):
        next(mapped)
    assert real_client.llen(keys.rq_queue_key("tasks")) == 0
    reattached = run_cli("results", executor.batch_id, "--json", env={"REDIS_URL": redis_url}, timeout=60)
    rows = [json.loads(line) for line in reattached.stdout.splitlines()]
    assert len(rows) == 26 and {row["error"]["type"] for row in rows} == {"Cancelled"}
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(add, 1, 1)


def test_bad_calls_fail_in_the_caller_before_anything_is_sent(redis_url: str, real_client: redis.Redis) -> None:
    def not_a_task(x: int) -> int:
        return x

    with RedisExecutor(redis_url, check_tasks=False) as executor:
        assert isinstance(executor, cf.Executor)
        with pytest.raises(TypeError, match="not a registered task"):
            executor.submit(not_a_task, 1)
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            executor.submit(add, {1, 2}, 3)
        with pytest.raises(TypeError, match="cannot be sent as JSON"):
            executor.map(add, [float("nan")], [1])
        with pytest.raises(ValueError, match="invalid task name"):
            executor.submit("rm -rf /", 1)
    assert real_client.zcard("dw:batches") == 0 and real_client.llen(keys.rq_queue_key("tasks")) == 0


def test_a_script_that_never_shuts_down_still_finishes_its_batch(redis_url: str, real_client: redis.Redis) -> None:
    script = (
        "from dispatcher import RedisExecutor\n"
        "executor = RedisExecutor(check_tasks=False)\n"
        "executor.submit('add', 1, 2)\n"
        "print(executor.batch_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "REDIS_URL": redis_url},
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    record = real_client.hgetall(f"dw:batch:{done.stdout.strip()}")
    assert record[b"state"] == b"submitted" and record[b"total"] == b"1"
    assert real_client.llen(keys.rq_queue_key("tasks")) == 1
