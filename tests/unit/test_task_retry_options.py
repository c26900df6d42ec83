"""Retries and time limits declared on a task: checked at registration, kept by every slot kind,
and carried to the output (`attempts`), on fakeredis."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest

from common import keys
from common.catalogue import Catalogue, default_catalogue
from common.errors import ConfigurationError
from common.events import TASKS_RETRIED, recent_events
from common.retry import RetryPolicy
from common.routing import BUILTIN_TASKS
from common.settings import Settings
from common.wire import ATTEMPTS_FIELD, TaskResult, TaskSpec, decode_results, encode_results
from dispatcher.output import human_line
from worker.execute import Watchdog, disarm_watchdog
from worker.publish import ResultPublisher
from worker.runtime import Runtime
from worker.serial import run_serial

calls: dict[str, int] = {}
"""Attempts per flaky key, and `seen`: the flaky attempts made when a plain task ran."""
seen: list[int] = []


def catalogue() -> Catalogue:
    catalogue = Catalogue()

    @catalogue.register(retries=3, retry_on=(OSError, TimeoutError), backoff=0.3, jitter="none")
    def flaky(key: str, failures: int) -> str:
        return _attempt(key, failures)

    @catalogue.register(name="aio.flaky", retries=3, retry_on=OSError, backoff=0.3, jitter="none")
    async def aflaky(key: str, failures: int) -> str:
        outcome = _attempt(key, failures)
        await asyncio.sleep(0)
        return outcome

    @catalogue.register(retries=3, retry_on=OSError, backoff=0.01)
    def picky(key: str) -> None:
        calls[key] = calls.get(key, 0) + 1
        raise ValueError("not worth another try")

    @catalogue.register
    def plain(x: int) -> int:
        seen.append(sum(calls.values()))
        return x

    @catalogue.register(name="aio.plain")
    async def aplain(x: int) -> int:
        seen.append(sum(calls.values()))
        return x

    @catalogue.register(timeout=1)
    def runaway(seconds: float) -> str:
        time.sleep(seconds)
        return f"slept in {os.getpid()}"

    @catalogue.register(name="aio.runaway", timeout=1)
    async def arunaway(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    # Limited like the runaway, but with room to spare: on a loaded machine, forking the child that
    # runs a limited task on a thread slot can take a good part of a second.
    @catalogue.register(timeout=600)
    def limited() -> str:
        return f"ran in {os.getpid()}"

    @catalogue.register(name="aio.limited", timeout=600)
    async def alimited() -> str:
        return "ran"

    @catalogue.register
    def pid() -> int:
        return os.getpid()

    return catalogue


def _attempt(key: str, failures: int) -> str:
    calls[key] = calls.get(key, 0) + 1
    if calls[key] <= failures:
        raise ConnectionResetError(f"attempt {calls[key]} of {key} failed")
    return f"{key} ok"


runtimes: list[Runtime] = []


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    calls.clear()
    seen.clear()
    yield
    disarm_watchdog()
    while runtimes:
        pool = runtimes.pop().pool()
        if pool is not None:
            pool.close()


def run_chunk(
    client: fakeredis.FakeRedis, specs: list[TaskSpec], threads: int = 1, async_slots: int = 0
) -> list[TaskResult]:
    """Run one chunk as a worker with these slots would; its results in the order they were published."""
    settings = Settings.from_env({}, task_timeout=60)
    runtime = Runtime(settings, catalogue(), "w", threads, async_slots=async_slots)
    runtimes.append(runtime)
    batch = uuid.uuid4().hex
    publisher = ResultPublisher(client, batch, 0, 60, "w")
    pool = runtime.pool()
    if pool is None:
        rows = [spec.to_wire() for spec in specs]
        with Watchdog(settings.task_timeout) as watchdog:
            run_serial(rows, runtime.catalogue, settings, "w", watchdog, publisher)
    else:
        pool.run(specs, runtime, publisher)
    publisher.flush()
    results = [r for _id, fields in client.xrange(keys.results_key(batch)) for r in decode_results(fields)[1]]
    assert sorted(r.index for r in results) == list(range(len(specs))), "every task has exactly one result"
    return results


MODES = [pytest.param(1, 0, id="serial"), pytest.param(3, 0, id="threads"), pytest.param(1, 3, id="async")]


def _name(base: str, async_slots: int) -> str:
    return f"aio.{base}" if async_slots else base


@pytest.mark.parametrize(("threads", "async_slots"), MODES)
def test_a_task_that_fails_twice_then_succeeds_gives_its_result_after_3_attempts(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    specs = [TaskSpec(0, _name("flaky", async_slots), ["k", 2]), TaskSpec(1, "plain", [7])]
    results = {r.index: r for r in run_chunk(fake_client, specs, threads, async_slots)}
    assert (results[0].ok, results[0].value, results[0].attempts) == (True, "k ok", 3)
    assert (results[1].value, results[1].attempts) == (7, 1)
    assert calls == {"k": 3}
    assert recent_events(fake_client)[TASKS_RETRIED] == 1, "`dispatcher status` counts the retried task once"


def test_tasks_that_ran_once_are_not_counted_as_retried(fake_client: fakeredis.FakeRedis) -> None:
    run_chunk(fake_client, [TaskSpec(0, "plain", [7]), TaskSpec(1, "picky", ["p"])])
    assert recent_events(fake_client)[TASKS_RETRIED] == 0


@pytest.mark.parametrize(("threads", "async_slots"), MODES)
def test_a_task_that_keeps_failing_reports_its_last_error_and_its_attempts(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    [result] = run_chunk(fake_client, [TaskSpec(0, _name("flaky", async_slots), ["k", 99])], threads, async_slots)
    assert (result.ok, result.error_type, result.attempts) == (False, "ConnectionResetError", 4)
    assert result.error_message == "attempt 4 of k failed"
    assert "attempt 4 of k failed" in (result.traceback or "")


@pytest.mark.parametrize(("threads", "async_slots"), MODES)
def test_an_error_outside_retry_on_is_not_retried(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    [result] = run_chunk(fake_client, [TaskSpec(0, "picky", ["p"])], threads, async_slots)
    assert (result.error_type, result.attempts, calls) == ("ValueError", 1, {"p": 1})


@pytest.mark.parametrize(("threads", "async_slots"), [pytest.param(2, 0, id="threads"), pytest.param(1, 2, id="async")])
def test_tasks_backing_off_leave_their_slots_to_the_rest_of_the_chunk(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    # Two flaky tasks fill both slots, then back off; the plain tasks run meanwhile, before any retry
    # (had the backoffs held the slots, the plain tasks would have seen the retries made).
    flaky, plain = _name("flaky", async_slots), _name("plain", async_slots)
    specs = [TaskSpec(0, flaky, ["a", 1]), TaskSpec(1, flaky, ["b", 1])]
    specs += [TaskSpec(i, plain, [i]) for i in range(2, 6)]
    results = run_chunk(fake_client, specs, threads, async_slots)
    assert seen == [2, 2, 2, 2]
    assert [r.index for r in results][-2:] in ([0, 1], [1, 0])
    assert all(r.ok for r in results)


def test_a_serial_worker_retries_after_the_rest_of_its_chunk(fake_client: fakeredis.FakeRedis) -> None:
    specs = [TaskSpec(0, "flaky", ["a", 1]), TaskSpec(1, "plain", [1]), TaskSpec(2, "plain", [2])]
    results = run_chunk(fake_client, specs)
    assert seen == [1, 1]
    assert [r.index for r in results] == [1, 2, 0] and results[2].attempts == 2


@pytest.mark.parametrize(("threads", "async_slots"), MODES)
def test_a_task_time_limit_overrides_the_workers_and_the_slot_goes_on(
    fake_client: fakeredis.FakeRedis, threads: int, async_slots: int
) -> None:
    runaway = _name("runaway", async_slots)
    specs = [TaskSpec(0, runaway, [3600]), TaskSpec(1, _name("limited", async_slots), []), TaskSpec(2, "pid", [])]
    specs += [TaskSpec(i, "plain", [i]) for i in range(3, 3 + 2 * max(threads, async_slots))]
    results = {r.index: r for r in run_chunk(fake_client, specs, threads, async_slots)}
    assert (results[0].error_type, results[0].error_message) == (
        "TaskTimeout",
        "task ran longer than 1 s and was stopped",
    )
    assert results[1].ok and results[2].value == os.getpid()
    assert all(results[i].value == i for i in range(3, len(specs)))


def test_on_thread_slots_a_task_with_a_time_limit_runs_in_a_child_process(fake_client: fakeredis.FakeRedis) -> None:
    results = {r.index: r for r in run_chunk(fake_client, [TaskSpec(0, "limited", [])], threads=2)}
    assert results[0].ok and results[0].value != f"ran in {os.getpid()}"
    serial = {r.index: r for r in run_chunk(fake_client, [TaskSpec(0, "limited", [])])}
    assert serial[0].value == f"ran in {os.getpid()}"


def test_attempts_travel_in_an_optional_field_and_reach_both_outputs() -> None:
    retried = TaskResult(0, "flaky", ["k", 2], {}, None, True, "k ok", worker="w", elapsed_ms=1.5, attempts=3)
    once = TaskResult(1, "plain", [7], {}, None, True, 7, worker="w")
    fields = encode_results("w", 0, [retried, once])
    assert fields[ATTEMPTS_FIELD] == '{"0":3}'
    assert [r.attempts for r in decode_results(fields)[1]] == [3, 1]
    plain_fields = encode_results("w", 0, [once])
    assert ATTEMPTS_FIELD not in plain_fields  # results of tasks that ran once are unchanged on the wire
    assert retried.to_record()["attempts"] == 3 and "attempts" not in once.to_record()
    assert human_line(retried) == "Task 1: flaky k 2 = k ok after 3 attempts (by w, 1.50 ms)"
    broken = {**fields, ATTEMPTS_FIELD: "{not json"}
    assert [r.value for r in decode_results(broken)[1]] == ["k ok", 7]  # a bad field costs the counts only


def test_options_are_kept_on_the_definition_and_builtin_tasks_declare_none() -> None:
    definition = catalogue().get("flaky")
    assert definition.retry is not None and definition.retry.retries == 3 and definition.timeout is None
    assert definition.retry.retry_on == (OSError, TimeoutError) and not definition.plain
    assert catalogue().get("runaway").timeout == 1
    assert all(default_catalogue.get(name).plain for name in BUILTIN_TASKS)
    assert not Catalogue().retrying and catalogue().retrying
    small = Catalogue()
    small.register(lambda: None, name="small", retries=1, max_backoff=0.2)  # the default backoff is capped
    assert small.get("small").retry == RetryPolicy(1, (Exception,), 0.2, 0.2, "full")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"retries": 1.5}, "retries must be an integer >= 0"),
        ({"retry_on": OSError}, "retry_on without retries has no effect"),
        ({"backoff": 1, "max_backoff": 2}, "backoff, max_backoff without retries"),
        ({"retries": 2, "retry_on": "OSError"}, "retry_on must be an exception class or a tuple"),
        ({"retries": 2, "retry_on": (OSError, 3)}, "retry_on must be exception classes"),
        ({"retries": 2, "backoff": -0.5}, "backoff must be a finite number of seconds >= 0"),
        ({"retries": 2, "backoff": 2, "max_backoff": 1}, "max_backoff \\(1\\) is below backoff \\(2\\)"),
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"timeout": float("inf")}, "timeout must be a positive number of seconds"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds"),
        ({"retrys": 3}, "unexpected keyword argument 'retrys'"),
    ],
)
def test_invalid_options_fail_at_registration_naming_the_task(options: dict[str, Any], message: str) -> None:
    def job() -> None:
        pass

    with pytest.raises(ConfigurationError, match=f"task 'job' .*{message}"):
        Catalogue().register(job, **options)
