"""worker.blocking: a task with a time limit of its own, run in a forked child from a thread slot."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from common.catalogue import Catalogue
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from worker.execute import PendingRetry, execute_task


def catalogue() -> Catalogue:
    catalogue = Catalogue()

    @catalogue.register(timeout=5)
    def big(size: int) -> str:
        return "x" * size  # more than a pipe holds at once

    @catalogue.register(timeout=5)
    def unsendable() -> float:
        return float("nan")

    @catalogue.register(timeout=5)
    def dies(how: str) -> None:
        if how == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(3)

    @catalogue.register(timeout=5)
    def raises() -> None:
        _inner()

    @catalogue.register(timeout=5, retries=2, retry_on=KeyError, backoff=0.1)
    def keyed(key: str) -> None:
        raise KeyError(key)

    @catalogue.register(name="aio.limited", timeout=5)
    async def limited(value: int) -> int:
        await asyncio.sleep(0)
        return value

    return catalogue


def _inner() -> None:
    raise LookupError("nothing here")


def on_a_thread(spec: TaskSpec) -> TaskResult:
    """Run one task as a thread slot does (no watchdog)."""
    settings = Settings.from_env({}, max_result_bytes=10_000_000)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(execute_task, spec, catalogue(), settings, "w").result()


def test_a_large_value_comes_back_whole() -> None:
    result = on_a_thread(TaskSpec(0, "big", [1_000_000]))
    assert result.ok and result.value == "x" * 1_000_000


def test_a_value_json_cannot_carry_fails_the_task() -> None:
    result = on_a_thread(TaskSpec(0, "unsendable", []))
    assert result.error_type == "TypeError" and "cannot be sent as JSON" in (result.error_message or "")


def test_a_child_that_dies_fails_its_task_with_how_it_died() -> None:
    died = on_a_thread(TaskSpec(0, "dies", ["signal"]))
    assert (died.error_type, died.error_message) == (
        "RuntimeError",
        "the task's process ended without an answer (signal 9)",
    )
    exited = on_a_thread(TaskSpec(1, "dies", ["exit"]))
    assert exited.error_message == "the task's process ended without an answer (exit code 3)"


def test_an_error_keeps_its_type_message_and_traceback_and_its_retry_policy() -> None:
    result = on_a_thread(TaskSpec(0, "raises", []))
    assert (result.error_type, result.error_message) == ("LookupError", "nothing here")
    assert "_inner" in (result.traceback or "") and "worker/blocking.py" not in (result.traceback or "")
    retried = on_a_thread(TaskSpec(1, "keyed", ["k"]))
    assert type(retried) is PendingRetry and retried.error_type == "KeyError" and 0 <= retried.delay <= 0.1


def test_a_coroutine_task_runs_on_a_loop_of_its_own_in_the_child() -> None:
    assert on_a_thread(TaskSpec(0, "aio.limited", [7])).value == 7
