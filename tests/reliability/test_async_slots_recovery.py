"""Guarantees 1 and 2 with async slots: a chunk of coroutine tasks survives SIGKILL (it runs again
elsewhere) and SIGTERM (it finishes first); every result exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    assert_exactly_once,
    live_worker_names,
    parse_json_results,
    start_chunk_mid_run,
    stream_entries,
)
from tests.reliability.test_worker_kill import kill_and_time_rerun
from tests.support import wait_until

pytestmark = pytest.mark.reliability

TOTAL = 24
ASYNC = ("--async-slots", "4")


def start_batch(
    procs: Procs, client: redis.Redis, tmp_path: Path, worker: str, seconds: float = 0.3
) -> tuple[object, str]:
    """A batch of one chunk of TOTAL naps (TOTAL / 4 waves of `seconds` on 4 slots), caught mid-chunk."""
    return start_chunk_mid_run(procs, client, tmp_path, worker, [f"rt.anap {seconds} {i}" for i in range(TOTAL)])


def test_killed_async_worker_chunk_runs_again_elsewhere(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    victim = procs.worker("--name", "victim", *ASYNC)
    wait_until(lambda: live_worker_names(real_client) == {"victim"}, 30, "the victim worker")
    dispatcher, batch_id = start_batch(procs, real_client, tmp_path, "victim")
    procs.worker("--name", "rescuer", *ASYNC)
    wait_until(lambda: "rescuer" in live_worker_names(real_client), 30, "the rescuer worker")

    kill_and_time_rerun(real_client, victim, batch_id)

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)  # type: ignore[attr-defined]
    records = parse_json_results(procs.output(dispatcher))  # type: ignore[arg-type]
    by_index = assert_exactly_once(records, TOTAL)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    workers = {r["worker"] for r in records}
    assert workers == {"victim", "rescuer"}, workers  # part ran before the kill, the rest after


def test_sigterm_lets_the_async_chunk_finish(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--name", "warm", *ASYNC)
    wait_until(lambda: "warm" in live_worker_names(real_client), 30, "the worker")
    dispatcher, _batch_id = start_batch(procs, real_client, tmp_path, "warm")

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(30) == 0, procs.log(worker)
    assert dispatcher.wait(30) == 0, procs.log(dispatcher)  # type: ignore[arg-type]
    records = parse_json_results(procs.output(dispatcher))  # type: ignore[arg-type]
    by_index = assert_exactly_once(records, TOTAL)
    assert {r["worker"] for r in records} == {"warm"}
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())


def test_second_sigterm_stops_the_async_chunk_at_once_and_it_runs_elsewhere(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--name", "cold", *ASYNC)
    wait_until(lambda: "cold" in live_worker_names(real_client), 30, "the worker")
    dispatcher, batch_id = start_batch(procs, real_client, tmp_path, "cold", seconds=0.8)  # 4.8 s of chunk

    worker.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within 1 s of the first (a pool's duplicate)
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    cold_results = sum(len(json.loads(f[b"r"])) for _id, f in stream_entries(real_client, batch_id))
    procs.worker("--name", "rescuer", *ASYNC)

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)  # type: ignore[arg-type]
    records = parse_json_results(procs.output(dispatcher))  # type: ignore[arg-type]
    by_index = assert_exactly_once(records, TOTAL)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    by_worker = {w: sum(r["worker"] == w for r in records) for w in ("cold", "rescuer")}
    assert by_worker["rescuer"] >= 1, by_worker  # the cold worker did not finish the chunk
    assert by_worker["cold"] <= cold_results < TOTAL
