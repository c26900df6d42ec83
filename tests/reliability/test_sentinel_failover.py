"""Guarantee 10: the Redis master dies (SIGKILL) mid-batch and Sentinel promotes its replica. Workers and
the waiting dispatcher find the new master by themselves, and every task gets exactly one result:
a task whose write was lost with the old master runs again or is reported TaskLost, never missing.
With DW_MIN_REPLICAS=1 every enqueue and result write waits for the replica, so none is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common import keys
from dispatcher.executor import RedisExecutor
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    assert_exactly_once,
    parse_json_results,
    record_figure,
    write_tasks,
)
from tests.reliability.sentinels import SentinelCluster
from tests.support import wait_until

pytestmark = pytest.mark.reliability

TOTAL = 20_000
WORKERS = 3
NAP = 0.001
"""Seconds each task sleeps: the batch lasts long enough to be caught mid-way."""


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    made = SentinelCluster()
    try:
        yield made.start()
    finally:
        made.stop()


def _batch_id(procs: Procs, dispatcher: object) -> str:
    line = procs.log(dispatcher).split("batch ", 1)[1]  # type: ignore[arg-type]
    return line.split(":", 1)[0].strip()


def _run_failover(cluster: SentinelCluster, procs: Procs, tmp_path: Path, durable: bool) -> dict[str, object]:
    """Submit TOTAL tasks over WORKERS workers, kill the master once a tenth of the results are out,
    and check the output. Returns the measured figures."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    for i in range(WORKERS):
        procs.worker("--name", f"ha-{i}")
    assert cluster.replica is not None and cluster.master is not None
    master = redis.Redis(port=cluster.master.port)
    wait_until(lambda: len(master.smembers("rq:workers")) == WORKERS, 60, "the workers")
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.mark {runs} {NAP} {i}" for i in range(TOTAL)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json")
    out = tmp_path / f"dispatcher-{procs.processes.index(dispatcher)}.out"
    wait_until(lambda: out.read_bytes().count(b"\n") >= TOTAL // 10, 120, "a tenth of the results")
    batch_id = _batch_id(procs, dispatcher)
    done_at_kill = out.read_bytes().count(b"\n")
    killed = cluster.kill_master()
    master.close()

    wait_until(cluster.promoted, 60, "Sentinel to promote the replica")
    promoted = time.monotonic()
    # The old master's host comes back (as a restart policy would bring it): Sentinel makes it a
    # replica of the new master, so durable writes have a replica to wait for again. It comes back
    # empty, so it must never be promoted: with the tests' one-second down-after, a loaded machine
    # once saw the batch vanish from the new master after it came back, most likely a second failover
    # to it before it had synced (docs/reliability.md, known limits).
    cluster.master.extra_args += ["--replica-priority", "0"]
    cluster.master.start()
    new_master = redis.Redis(port=cluster.replica.port)
    stream = keys.results_key(batch_id)
    base = new_master.xlen(stream)
    wait_until(lambda: new_master.xlen(stream) > base, 60, "the first result through the new master")
    first_result = time.monotonic()

    assert dispatcher.wait(300) in (0, 1), procs.log(dispatcher)
    records = parse_json_results(procs.output(dispatcher))
    by_index = assert_exactly_once(records, TOTAL)
    lost = [r for r in by_index.values() if not r["ok"]]
    assert {r["error"]["type"] for r in lost} <= {"TaskLost"}, lost[:3]
    assert all(r["result"] == r["index"] for r in by_index.values() if r["ok"])
    assert dispatcher.returncode == (1 if lost else 0)
    executions = Counter(int(line) for line in runs.read_text().split())
    rerun = sum(count - 1 for count in executions.values() if count > 1)
    for process in procs.processes[:WORKERS]:
        assert process.poll() is None, procs.log(process)  # reconnected by itself, still serving
    new_master.close()
    figures: dict[str, object] = {
        "durable": durable,
        "done_at_kill": done_at_kill,
        "failover_s": round(first_result - killed, 2),
        "promotion_s": round(promoted - killed, 2),
        "rerun": rerun,
        "lost": len(lost),
    }
    record_figure("sentinel_failover", **figures)
    return figures


def test_master_killed_mid_batch_every_task_gets_one_result(
    cluster: SentinelCluster, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(cluster.url, FAST_RECOVERY)
    _run_failover(cluster, procs, tmp_path, durable=False)


def test_master_killed_with_min_replicas_loses_no_task(
    cluster: SentinelCluster, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(cluster.url, {**FAST_RECOVERY, "DW_MIN_REPLICAS": "1"})
    figures = _run_failover(cluster, procs, tmp_path, durable=True)
    assert figures["lost"] == 0


def test_executor_rides_out_a_failover(
    cluster: SentinelCluster, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(cluster.url, FAST_RECOVERY)
    for i in range(2):
        procs.worker("--name", f"ex-{i}")
    assert cluster.master is not None
    master = redis.Redis(port=cluster.master.port)
    wait_until(lambda: len(master.smembers("rq:workers")) == 2, 60, "the workers")
    master.close()
    with RedisExecutor(cluster.url) as executor:
        assert executor.submit("add", 1, 2).result(timeout=60) == 3
        futures = [executor.submit("rt.nap", 0.05, i) for i in range(100)]
        wait_until(lambda: sum(f.done() for f in futures) >= 10, 60, "the first results")
        cluster.kill_master()
        wait_until(cluster.promoted, 60, "Sentinel to promote the replica")
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=120))
            except Exception as exc:  # a lost write is reported, never hung
                outcomes.append(type(exc).__name__)
        assert len(outcomes) == 100
        assert all(o == i or o == "TaskLost" for i, o in enumerate(outcomes)), outcomes
        assert executor.submit("add", 2, 3).result(timeout=60) == 5  # and it goes on through the new master


def test_rq_info_and_dispatcher_status_through_the_sentinels(
    cluster: SentinelCluster, procs_factory: Callable[..., Procs]
) -> None:
    procs = procs_factory(cluster.url, FAST_RECOVERY)
    procs.worker("--name", "seen-by-rq")
    assert cluster.master is not None
    master = redis.Redis(port=cluster.master.port)
    wait_until(lambda: master.smembers("rq:workers"), 60, "the worker")
    master.close()
    rq = shutil.which("rq", path=str(Path(sys.executable).parent))
    assert rq is not None
    env = {**os.environ, "REDIS_URL": cluster.url}
    info = subprocess.run(
        [rq, "info", "-c", "common.rq_settings", "--only-workers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    assert "seen-by-rq" in info.stdout, info.stdout
    status = procs.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert "seen-by-rq" in status.stdout
