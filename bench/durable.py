"""`python -m bench.durable`: the cost of the durable option (DW_MIN_REPLICAS=1, Redis WAIT).

W1 (10,000 add(i, i) on 2 worker processes) and W2 (sequential round trips, chunk size 1) against one
master with one replica on this host, without and with the option, alternating in the same run so
both see the same machine. Prints a table and writes JSON (bench/results/durable.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import redis

from bench.ours import Checker, _adds
from bench.spec import Sizes, percentile
from common.connection import connect
from common.settings import Settings
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.local import EmbeddedRedis, LocalWorkers, wait_for_workers
from dispatcher.session import Session

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "durable.json"
MODES = {"off": "0", "on": "1"}
"""DW_MIN_REPLICAS of each mode."""


def _with_workers(url: str, processes: int, mode: str) -> tuple[LocalWorkers, redis.Redis, Settings]:
    os.environ["DW_MIN_REPLICAS"] = MODES[mode]  # the workers inherit it, and so do the settings below
    settings = Settings.from_env(redis_url=url)
    workers = LocalWorkers(url, processes).start()
    client = connect(settings)
    wait_for_workers(client, processes)
    return workers, client, settings


def w1_once(url: str, tasks: int, mode: str) -> float:
    """Tasks per second of one W1 run."""
    workers, client, settings = _with_workers(url, 2, mode)
    try:
        submit_batch(client, settings, _adds(200), SubmitOptions(), Checker())  # warm-up
        sink = Checker()
        started = time.perf_counter()
        submit_batch(client, settings, _adds(tasks), SubmitOptions(), sink)
        elapsed = time.perf_counter() - started
        if sink.count != tasks or sink.bad:
            raise RuntimeError(f"W1 {mode}: {sink.count} results, {sink.bad} wrong")
        return tasks / elapsed
    finally:
        workers.stop()
        client.close()


def w2_once(url: str, calls: int, mode: str) -> tuple[float, float]:
    """p50 and p99 milliseconds of one W2 run."""
    workers, client, settings = _with_workers(url, 1, mode)
    try:
        latencies = []
        with Session(client, settings) as session:
            for i in range(30):
                session.call("add", i, i)
            for i in range(calls):
                started = time.perf_counter()
                result = session.call("add", i, i)
                latencies.append(time.perf_counter() - started)
                if not result.ok or result.value != 2 * i:
                    raise RuntimeError(f"W2 {mode}: wrong result {result}")
        return percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
    finally:
        workers.stop()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="runs of each workload in each mode (median)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")
    parser.add_argument("--w1-tasks", type=int, default=Sizes().w1, help="W1's size (10,000 lasts ~0.1 s: noisy)")
    args = parser.parse_args()
    sizes = Sizes(w1=args.w1_tasks)
    master = EmbeddedRedis().start()
    replica = EmbeddedRedis(extra_args=("--replicaof", "127.0.0.1", str(master.port))).start()
    try:
        with redis.Redis(port=replica.port) as check:
            while check.info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
        runs: dict[str, dict[str, list[float]]] = {m: {"w1": [], "p50": [], "p99": []} for m in MODES}
        for _ in range(args.reps):
            for mode in MODES:  # alternating, so both modes see the same machine
                runs[mode]["w1"].append(w1_once(master.url, sizes.w1, mode))
                p50, p99 = w2_once(master.url, sizes.w2, mode)
                runs[mode]["p50"].append(p50)
                runs[mode]["p99"].append(p99)
    finally:
        os.environ.pop("DW_MIN_REPLICAS", None)
        replica.stop()
        master.stop()
    medians: dict[str, Any] = {m: {k: statistics.median(v) for k, v in runs[m].items()} for m in MODES}
    print(f"W1 at {sizes.w1} tasks, W2 at {sizes.w2} calls, medians of {args.reps}")
    print(f"{'':28}{'DW_MIN_REPLICAS=0':>20}{'DW_MIN_REPLICAS=1':>20}{'ratio':>8}")
    for key, label in (("w1", "W1 throughput, tasks/s"), ("p50", "W2 round trip p50, ms"), ("p99", "W2 p99, ms")):
        off, on = medians["off"][key], medians["on"][key]
        print(f"{label:28}{off:>20.3f}{on:>20.3f}{on / off:>8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = {"reps": args.reps, "w1_tasks": sizes.w1, "runs": runs, "medians": medians}
    args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
