"""Async slots: coroutine tasks on one event loop per process, mixed with sync tasks, on fakeredis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from common import default_catalogue, keys
from common.catalogue import Catalogue
from common.errors import ConfigurationError
from common.settings import Settings
from common.wire import TaskResult, TaskSpec, decode_results
from worker.execute import Watchdog, execute_task
from worker.publish import ResultPublisher
from worker.runner import advertisement
from worker.runtime import Runtime
from worker.serial import run_serial

probe: dict[str, Any] = {"running": 0, "peak": 0, "threads": set()}


def async_catalogue() -> Catalogue:
    catalogue = Catalogue()

    @catalogue.register(name="aio.double")
    async def double(x: int) -> int:
        probe["running"] += 1
        probe["peak"] = max(probe["peak"], probe["running"])
        probe["threads"].add(threading.get_ident())
        await asyncio.sleep(0.01)
        probe["running"] -= 1
        return 2 * x

    @catalogue.register(name="aio.explode")
    async def explode(message: str) -> None:
        await asyncio.sleep(0)
        _deeper(message)

    @catalogue.register(name="aio.hang")
    async def hang() -> None:
        await asyncio.sleep(3600)

    @catalogue.register(name="aio.stubborn")
    async def stubborn() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "ignored the stop"
        return "slept"

    @catalogue.register(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    return catalogue


def _deeper(message: str) -> None:
    raise RuntimeError(message)


runtimes: list[Runtime] = []


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    probe.update(running=0, peak=0, threads=set())
    yield
    while runtimes:
        pool = runtimes.pop().pool()
        if pool is not None:
            pool.close()


def make_runtime(
    catalogue: Catalogue, settings: Settings | None = None, threads: int = 1, async_slots: int = 0
) -> Runtime:
    runtime = Runtime(settings or Settings.from_env({}), catalogue, "w", threads, async_slots=async_slots)
    runtimes.append(runtime)
    return runtime


def run_chunk(client: fakeredis.FakeRedis, runtime: Runtime, specs: list[TaskSpec]) -> dict[int, TaskResult]:
    pool = runtime.pool()
    assert pool is not None
    publisher = ResultPublisher(client, "b1", 0, 60, runtime.name)
    pool.run(specs, runtime.context, publisher)
    publisher.flush()
    results: list[TaskResult] = []
    for _id, fields in client.xrange(keys.results_key("b1")):
        results.extend(decode_results(fields)[1])
    by_index = {r.index: r for r in results}
    assert len(by_index) == len(results) == len(specs), "every task has exactly one result"
    return by_index


def test_coroutine_tasks_share_one_thread_and_fill_exactly_the_async_slots(fake_client: fakeredis.FakeRedis) -> None:
    runtime = make_runtime(async_catalogue(), async_slots=5)
    results = run_chunk(fake_client, runtime, [TaskSpec(i, "aio.double", [i]) for i in range(23)])
    assert all(results[i].ok and results[i].value == 2 * i for i in range(23))
    assert probe["peak"] == 5
    assert probe["threads"] == {threading.get_ident()}


def test_each_bad_coroutine_task_fails_alone(fake_client: fakeredis.FakeRedis) -> None:
    settings = Settings.from_env({}, task_timeout=0.2)
    runtime = make_runtime(async_catalogue(), settings, async_slots=4)
    specs = [
        TaskSpec(0, "aio.double", [1]),
        TaskSpec(1, "aio.explode", ["kaboom"]),
        TaskSpec(2, "aio.hang", []),
        TaskSpec(3, "aio.double", ["one"]),
        TaskSpec(4, "aio.double", [1, 2]),
        TaskSpec(5, "nosuch", []),
        TaskSpec(6, "add", [2, 3]),
        TaskSpec(7, "aio.double", [4]),
    ]
    results = run_chunk(fake_client, runtime, specs)
    assert (results[0].ok, results[0].value, results[7].value, results[6].value) == (True, 2, 8, 5)
    assert (results[1].error_type, results[1].error_message) == ("RuntimeError", "kaboom")
    tb = results[1].traceback or ""
    assert "_deeper" in tb and "in explode" in tb and "asyncio" not in tb and "worker/aio.py" not in tb
    assert results[2].error_type == "TaskTimeout" and "0.2 s" in (results[2].error_message or "")
    assert results[3].error_type == results[4].error_type == "InvalidArguments"
    assert results[5].error_type == "UnknownTask"


def test_a_coroutine_that_swallows_its_stop_keeps_its_result_and_its_slot_goes_on(
    fake_client: fakeredis.FakeRedis,
) -> None:
    runtime = make_runtime(async_catalogue(), Settings.from_env({}, task_timeout=0.1), async_slots=1)
    specs = [TaskSpec(0, "aio.stubborn", []), TaskSpec(1, "aio.double", [5]), TaskSpec(2, "aio.hang", [])]
    results = run_chunk(fake_client, runtime, specs)
    assert (results[0].value, results[1].value, results[2].error_type) == ("ignored the stop", 10, "TaskTimeout")


def test_builtin_sleep_runs_its_async_form_on_async_slots_and_its_sync_form_elsewhere(
    fake_client: fakeredis.FakeRedis,
) -> None:
    definition = default_catalogue.get("sleep")
    assert definition.coroutine is not None and not asyncio.iscoroutinefunction(definition.func)
    runtime = make_runtime(default_catalogue, async_slots=3)
    specs = [TaskSpec(0, "sleep", [0.01]), TaskSpec(1, "sleep", [-1]), TaskSpec(2, "add", [1, 2])]
    results = run_chunk(fake_client, runtime, specs)
    assert (results[0].ok, results[0].value, results[2].value) == (True, 0.01, 3)
    assert results[1].error_type == "LimitExceeded"
    serial = execute_task(TaskSpec(0, "sleep", [0]), default_catalogue, Settings.from_env({}), "w")
    assert serial.ok and serial.value == 0


def test_async_slots_with_threads_run_sync_tasks_on_the_pool(fake_client: fakeredis.FakeRedis) -> None:
    runtime = make_runtime(async_catalogue(), threads=3, async_slots=4)
    specs = [TaskSpec(i, "add" if i % 2 else "aio.double", [i, i] if i % 2 else [i]) for i in range(20)]
    results = run_chunk(fake_client, runtime, specs)
    assert all(results[i].ok and results[i].value == 2 * i for i in range(20))
    assert advertisement(runtime)[keys.WORKER_FIELD_PREFIX + "slots"] == "4"


def test_coroutine_tasks_run_to_completion_without_async_slots() -> None:
    catalogue = async_catalogue()
    settings = Settings.from_env({})
    assert execute_task(TaskSpec(0, "aio.double", [21]), catalogue, settings, "w").value == 42
    failed = execute_task(TaskSpec(1, "aio.explode", ["no"]), catalogue, settings, "w")
    assert (failed.error_type, failed.error_message) == ("RuntimeError", "no")
    # The main thread's watchdog stops an overrunning coroutine, and the thread's loop still works after.
    with Watchdog(0.2) as watchdog:
        stopped = execute_task(TaskSpec(2, "aio.hang", []), catalogue, settings, "w", watchdog)
    assert stopped.error_type == "TaskTimeout"
    assert execute_task(TaskSpec(3, "aio.double", [1]), catalogue, settings, "w").value == 2


def test_the_serial_loop_runs_coroutine_tasks_to_completion(fake_client: fakeredis.FakeRedis) -> None:
    catalogue = async_catalogue()
    rows = [[0, None, "aio.double", [4], {}], [1, None, "aio.explode", ["no"], {}], [2, None, "add", [1, 1], {}]]
    publisher = ResultPublisher(fake_client, "b2", 0, 60, "w")
    with Watchdog(5) as watchdog:
        run_serial(rows, catalogue, Settings.from_env({}), "w", watchdog, publisher)  # type: ignore[arg-type]
    results = {r.index: r for _id, f in fake_client.xrange(keys.results_key("b2")) for r in decode_results(f)[1]}
    assert (results[0].value, results[2].value) == (8, 2)
    assert (results[1].error_type, results[1].error_message) == ("RuntimeError", "no")


def test_a_chunk_that_fails_midway_leaves_no_coroutine_running(fake_client: fakeredis.FakeRedis) -> None:
    runtime = make_runtime(async_catalogue(), async_slots=4)
    pool = runtime.pool()
    assert pool is not None

    class Broken(ResultPublisher):
        def add(self, result: TaskResult) -> None:
            raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        specs = [TaskSpec(i, "aio.double", [i]) for i in range(10)]
        pool.run(specs, runtime.context, Broken(fake_client, "b", 0, 60, "w"))
    assert not [task for task in asyncio.all_tasks(pool.loop()) if not task.done()]
    assert probe["running"] == 0


def test_async_forms_are_checked_against_the_task() -> None:
    catalogue = Catalogue()

    @catalogue.register
    def wait(seconds: float) -> float:
        return seconds

    async def other(delay: float) -> float:
        return delay

    def not_async(seconds: float) -> float:
        return seconds

    with pytest.raises(ConfigurationError, match="same parameters"):
        catalogue.add_coroutine("wait", other)
    with pytest.raises(ConfigurationError, match="async def"):
        catalogue.add_coroutine("wait", not_async)  # type: ignore[arg-type]
