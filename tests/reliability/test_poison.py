"""Guarantee: a task that kills its process fails alone, named (WorkerDied), and every other task of
its chunk gets its real result: the poison test, on serial, thread and async slots.

Before crash isolation, the culprits' whole chunks failed as ChunkFailed (61 innocent tasks each with
automatic chunk sizes), and the culprits with the same error as their chunk-mates."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common.events import WORKERS_LOST, recent_events
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    assert_exactly_once,
    live_worker_names,
    parse_json_results,
    record_figure,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability

TOTAL = 1000
SEGV_AT = 300
EXIT_AT = 700
EXIT_CODE = 3
HANG_GUARD = 240.0
"""Far above what the batch needs; only here so that a broken recovery fails instead of hanging."""


def poison_lines(awaited: bool) -> list[str]:
    """A thousand calls of one task, returning their index; one segfaults and one calls os._exit.
    One task name: chunks hold one task's calls, so the culprits share chunks with innocent calls."""
    task = "rt.apoison" if awaited else "rt.poison"
    lines = [f"{task} {i}" for i in range(TOTAL)]
    lines[SEGV_AT] = f"{task} {SEGV_AT} segv"
    lines[EXIT_AT] = f"{task} {EXIT_CODE} exit"
    return lines


def first_death(procs: Procs, workers: list[subprocess.Popen[bytes]]) -> bool:
    """A supervisor logged a worker process's death (within a fraction of a second of it)."""
    return any("exited with" in procs.log(worker) for worker in workers)


@pytest.mark.parametrize("slots", [(), ("--threads", "4"), ("--async-slots", "8")], ids=["serial", "threads", "async"])
def test_a_task_that_kills_its_process_fails_alone(
    redis_url: str,
    real_client: redis.Redis,
    procs_factory: Callable[..., Procs],
    tmp_path: Path,
    slots: tuple[str, ...],
) -> None:
    procs = procs_factory(redis_url, env=FAST_RECOVERY)
    workers = [procs.worker("--name", name, *slots) for name in ("wa", "wb")]
    wait_until(lambda: live_worker_names(real_client) == {"wa", "wb"}, 30, "both workers")
    batch = write_tasks(tmp_path / "poison.txt", poison_lines(awaited=bool(slots) and slots[0] == "--async-slots"))

    dispatcher = procs.dispatcher("submit", str(batch), "--json")
    wait_until(lambda: first_death(procs, workers), HANG_GUARD, "the first crash", interval=0.01)
    crashed = time.monotonic()
    assert dispatcher.wait(HANG_GUARD) == 1, procs.log(dispatcher)
    after_crash = time.monotonic() - crashed

    by_index = assert_exactly_once(parse_json_results(procs.output(dispatcher)), TOTAL)
    innocent = {i: r for i, r in by_index.items() if i not in (SEGV_AT, EXIT_AT)}
    wrong = {i: r for i, r in innocent.items() if not (r["ok"] and r["result"] == i)}
    assert not wrong, f"{len(wrong)} innocent tasks without their result, e.g. {list(wrong.values())[:3]}"
    segv, exited = by_index[SEGV_AT], by_index[EXIT_AT]
    for culprit in (segv, exited):
        assert not culprit["ok"] and culprit["error"]["type"] == "WorkerDied", culprit
        assert "died while running this task" in culprit["error"]["message"], culprit
    assert "signal 11" in segv["error"]["message"], segv
    assert f"exit code {EXIT_CODE}" in exited["error"]["message"], exited
    summary = f"2 task(s) killed their worker process and failed alone (WorkerDied): {SEGV_AT + 1}, {EXIT_AT + 1}"
    assert summary in procs.log(dispatcher) or summary.replace(
        f"{SEGV_AT + 1}, {EXIT_AT + 1}", f"{EXIT_AT + 1}, {SEGV_AT + 1}"
    ) in procs.log(dispatcher), procs.log(dispatcher)
    record_figure(
        "poison",
        slots=" ".join(slots) or "serial",
        innocent_correct=len(innocent) - len(wrong),
        segv_error=segv["error"]["message"],
        exit_error=exited["error"]["message"],
        first_crash_to_end_seconds=round(after_crash, 2),
        heartbeat_ttl=FAST_RECOVERY["DW_HEARTBEAT_TTL"],
    )


def test_the_first_death_of_a_supervised_worker_already_blames_its_task(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    """With DW_CRASH_LIMIT=1, each culprit fails after the one death it causes: its supervisor read
    which task its process was running (worker.running). Without that record, the first death of a
    chunk blamed nobody, and each culprit killed a second process in the careful re-run."""
    procs = procs_factory(redis_url, env={**FAST_RECOVERY, "DW_CRASH_LIMIT": "1"})
    workers = [procs.worker("--name", name) for name in ("wa", "wb")]
    wait_until(lambda: live_worker_names(real_client) == {"wa", "wb"}, 30, "both workers")
    batch = write_tasks(tmp_path / "poison.txt", poison_lines(awaited=False))

    dispatcher = procs.dispatcher("submit", str(batch), "--json")
    assert dispatcher.wait(HANG_GUARD) == 1, procs.log(dispatcher)

    by_index = assert_exactly_once(parse_json_results(procs.output(dispatcher)), TOTAL)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items() if i not in (SEGV_AT, EXIT_AT))
    assert "signal 11" in by_index[SEGV_AT]["error"]["message"], by_index[SEGV_AT]
    assert f"exit code {EXIT_CODE}" in by_index[EXIT_AT]["error"]["message"], by_index[EXIT_AT]
    assert recent_events(real_client)[WORKERS_LOST] == 2, [procs.log(w) for w in workers]
    assert sum(procs.log(worker).count("starting a new one") for worker in workers) == 2
