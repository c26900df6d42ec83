"""Guarantee 3: the dispatcher SIGKILLed mid-wait; `dispatcher results BATCH_ID` later returns every
result exactly once, including those that finished while no dispatcher was running."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    assert_exactly_once,
    parse_json_results,
    stream_entries,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability


def test_results_after_the_dispatcher_was_killed(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    procs.worker()
    procs.worker()
    total = 60
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.05 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--chunk-size", "3", "--no-check")  # human output

    # The batch id is on stderr before anything is submitted, so a killed dispatcher's batch is found.
    announced = wait_until(lambda: re.search(r"batch (\w+): submitting", procs.log(dispatcher)), 30, "the batch id")
    batch_id = announced.group(1)
    wait_until(lambda: stream_entries(real_client, batch_id), 30, "the first results")
    dispatcher.kill()
    dispatcher.wait()
    at_kill = len(stream_entries(real_client, batch_id))

    status = procs.run("status", "--json")
    assert batch_id in {b["batch_id"] for b in json.loads(status.stdout)["batches"]}, status.stdout

    def finished() -> bool:
        done = real_client.hget(f"dw:batch:{batch_id}", "done")
        return done is not None and int(done) >= total

    wait_until(finished, 60, "the workers to finish the batch without a dispatcher")
    assert len(stream_entries(real_client, batch_id)) > at_kill  # results that no dispatcher saw arrive

    fetched = procs.run("results", batch_id, "--json", "--timeout", "60")
    assert fetched.returncode == 0, fetched.stderr
    by_index = assert_exactly_once(parse_json_results(fetched.stdout), total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())
