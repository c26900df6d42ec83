"""Guarantee 2: SIGTERM is a warm shutdown (the chunk finishes and is published); a second SIGTERM
stops the worker at once and its chunk runs again elsewhere. Nothing is lost either way."""

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
from tests.support import wait_until

pytestmark = pytest.mark.reliability

TOTAL = 8


def start_batch(procs: Procs, client: redis.Redis, tmp_path: Path, worker: str) -> tuple[object, str]:
    return start_chunk_mid_run(procs, client, tmp_path, worker, [f"rt.nap 0.5 {i}" for i in range(TOTAL)])


def test_sigterm_finishes_and_publishes_the_chunk(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--name", "warm")
    wait_until(lambda: "warm" in live_worker_names(real_client), 30, "the worker")
    dispatcher, _batch_id = start_batch(procs, real_client, tmp_path, "warm")

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(30) == 0, procs.log(worker)
    assert dispatcher.wait(30) == 0, procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))  # type: ignore[arg-type]
    by_index = assert_exactly_once(records, TOTAL)
    assert {r["worker"] for r in records} == {"warm"}  # the only worker finished the whole chunk
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    assert "warm" not in live_worker_names(real_client)  # and unregistered


def test_second_sigterm_stops_at_once_and_the_chunk_runs_elsewhere(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--name", "cold")
    wait_until(lambda: "cold" in live_worker_names(real_client), 30, "the worker")
    dispatcher, batch_id = start_batch(procs, real_client, tmp_path, "cold")

    worker.send_signal(signal.SIGTERM)
    time.sleep(1.2)  # RQ ignores a second signal within 1 s of the first (a pool's duplicate)
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    cold_results = sum(len(json.loads(f[b"r"])) for _id, f in stream_entries(real_client, batch_id))
    procs.worker("--name", "rescuer")

    assert dispatcher.wait(60) == 0, procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))  # type: ignore[arg-type]
    by_index = assert_exactly_once(records, TOTAL)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
    by_worker = {w: sum(r["worker"] == w for r in records) for w in ("cold", "rescuer")}
    assert by_worker["rescuer"] >= 1, by_worker  # the cold worker did not finish the chunk
    assert by_worker["cold"] <= cold_results < TOTAL
