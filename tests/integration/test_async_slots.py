"""Async slots in real worker processes: coroutine tasks on one event loop each, failing one by one."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
import redis

from common import keys
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.executor import RedisExecutor
from tests import asynctasks
from tests.conftest import WorkerFactory
from tests.integration.test_executor import USER_ENV, wait_offered

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SLOTS = 6


def test_coroutine_tasks_share_a_loop_per_process_and_bad_ones_fail_alone(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    for name in ("a1", "a2"):
        slots = ("--async-slots", str(SLOTS), "--task-timeout", "1")
        start_worker("--name", name, *slots, "--tasks", "tests.asynctasks", env=USER_ENV)
    wait_offered(real_client, "aio.where", workers=2)
    slots = {k: real_client.hget(k, "dw_slots") for k in real_client.smembers(keys.RQ_WORKERS)}
    assert set(slots.values()) == {str(SLOTS).encode()}, slots

    specs = [TaskSpec(i, "aio.where", [0.2]) for i in range(40)]
    specs += [
        TaskSpec(40, "aio.explode", ["kaboom"]),
        TaskSpec(41, "aio.forever", []),
        TaskSpec(42, "aio.where", ["slow"]),
        TaskSpec(43, "aio.where", [0.1, 2]),
        TaskSpec(44, "sleep", [0.05]),
        TaskSpec(45, "add", [20, 22]),
        TaskSpec(46, "sleep", [-1]),
    ]
    results: list[TaskResult] = []
    settings = Settings.from_env({}, redis_url=redis_url)
    summary = submit_batch(real_client, settings, specs, SubmitOptions(chunk_size=12, timeout=60), results.append)

    by_index = {r.index: r for r in results}
    assert len(results) == len(by_index) == len(specs) and summary.failed == 5
    threads_by_process: dict[int, set[int]] = defaultdict(set)
    for i in range(40):
        assert by_index[i].ok, by_index[i]
        pid, thread, running = by_index[i].value
        threads_by_process[pid].add(thread)
        assert 1 <= running <= SLOTS
    assert len(threads_by_process) == 2, "both processes ran coroutine tasks"
    assert all(len(threads) == 1 for threads in threads_by_process.values()), "one event loop thread per process"
    assert max(by_index[i].value[2] for i in range(40)) > 1, "coroutines ran side by side"
    assert (by_index[40].error_type, by_index[40].error_message) == ("RuntimeError", "kaboom")
    assert "_deeper" in (by_index[40].traceback or "") and "asynctasks.py" in (by_index[40].traceback or "")
    assert by_index[41].error_type == "TaskTimeout" and "1 s" in (by_index[41].error_message or "")
    assert by_index[42].error_type == by_index[43].error_type == "InvalidArguments"
    assert (by_index[44].ok, by_index[44].value, by_index[45].value) == (True, 0.05, 42)
    assert by_index[46].error_type == "LimitExceeded"
    done = {k: json.loads(real_client.hget(k, "dw_tasks") or b"[]") for k in real_client.smembers(keys.RQ_WORKERS)}
    assert all("aio.forever" in tasks for tasks in done.values())


def test_the_executor_submits_a_coroutine_task_by_its_function(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    start_worker("--async-slots", "4", "--tasks", "tests.asynctasks", env=USER_ENV)
    wait_offered(real_client, "aio.where")
    with RedisExecutor(redis_url) as executor:
        pid, _thread, running = executor.submit(asynctasks.where, 0.01).result(timeout=30)
    assert pid > 0 and running == 1
