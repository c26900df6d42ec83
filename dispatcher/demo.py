"""`dispatcher demo`: the classic dispatcher/worker pattern, live, in the original log format."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.local import EmbeddedRedis, LocalWorkers, wait_for_workers
from dispatcher.output import task_label

DEMO_TASKS: list[tuple[str, list[object]]] = [
    ("add", [10, 5]),
    ("multiply", [7, 8]),
    ("subtract", [100, 58]),
    ("divide", [22, 7]),
    ("power", [2, 32]),
    ("mod", [2026, 7]),
    ("fib", [90]),
    ("is_prime", [2_147_483_647]),
    ("sleep", [0.3]),
    ("divide", [1, 0]),
    ("sha256", ["dispatcher/worker"]),
    ("echo", ["hello from a worker"]),
]
"""The demo's stream of tasks; one of them fails on purpose, to show a task error."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def incoming(pace: float) -> Iterator[TaskSpec]:
    """Tasks arriving one by one, like requests reaching a dispatcher."""
    for index, (name, args) in enumerate(DEMO_TASKS):
        spec = TaskSpec(index, name, list(args), {}, None)
        say(f"[Dispatcher] Received task {index + 1}")
        yield spec
        time.sleep(pace)


def show_result(result: TaskResult) -> None:
    if result.ok:
        say(f"[Dispatcher] Got result: Task {task_label(result)} = {result.value} (by {result.worker})")
    else:
        say(
            f"[Dispatcher] Got result: Task {task_label(result)} failed: "
            f"{result.error_type}: {result.error_message} (by {result.worker})"
        )


def run_demo(workers: int, pace: float) -> int:
    """Run the demo; returns the exit code (0 when the demo worked as intended)."""
    with EmbeddedRedis() as server:
        settings = Settings.from_env(redis_url=server.url)
        names = [f"Worker {i}" for i in range(workers)]
        say(f"[Dispatcher] Starting {workers} workers...")
        with LocalWorkers(server.url, workers, ["--log-tasks"], names=names, quiet=False) as pool:
            from common.connection import connect

            client = connect(settings)
            wait_for_workers(client, workers)
            options = SubmitOptions(chunk_size=1, streaming=True, source="demo")
            summary = submit_batch(client, settings, incoming(pace), options, show_result)
            say(
                f"[Dispatcher] All {summary.total} tasks done: {summary.ok} ok, {summary.failed} failed "
                f"(one division by zero, on purpose). Stopping workers..."
            )
            del pool
    return 0 if summary.failed == 1 else 1
