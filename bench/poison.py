"""The poison batch: 1,000 tasks over two workers, one segfaults and one calls os._exit(3).

    python -m bench.poison [--slots serial|threads|async] [--runs 3] [--heartbeat-ttl 10]

Reports, per run: innocent tasks correct, the two culprits' errors, the dispatcher's exit code, the
time from the first death (its supervisor's note in Redis) to the end of the batch, and the whole
batch's time. Default heartbeat settings unless given: they bound how soon a death is noticed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from common import keys
from dispatcher.local import EmbeddedRedis, spawn, stop

SLOTS = {"serial": [], "threads": ["--threads", "4"], "async": ["--async-slots", "8"]}
TOTAL, SEGV_AT, EXIT_AT = 1000, 300, 700


def lines(awaited: bool) -> str:
    task = "rt.apoison" if awaited else "rt.poison"
    tasks = [f"{task} {i}" for i in range(TOTAL)]
    tasks[SEGV_AT] = f"{task} {SEGV_AT} segv"
    tasks[EXIT_AT] = f"{task} 3 exit"
    return "".join(t + "\n" for t in tasks)


def one_run(url: str, slots: str, env: dict[str, str], tmp: Path) -> dict[str, object]:
    client = redis.Redis.from_url(url)
    client.flushall()
    workers = [
        spawn(
            [sys.executable, "-m", "worker", "--name", name, "--quiet", *SLOTS[slots]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in ("wa", "wb")
    ]
    try:
        while client.scard(keys.RQ_WORKERS) < 2:
            time.sleep(0.05)
        batch = tmp / "poison.txt"
        batch.write_text(lines(slots == "async"))
        out = tmp / "out.jsonl"
        started = time.monotonic()
        with out.open("wb") as stdout:
            dispatcher = spawn(
                [sys.executable, "-m", "dispatcher", "submit", str(batch), "--json"],
                env=env,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
            )
            while not client.keys("dw:death:*") and dispatcher.poll() is None:
                time.sleep(0.01)
            crashed = time.monotonic()
            code = dispatcher.wait(600)
        ended = time.monotonic()
    finally:
        for worker in workers:
            stop(worker, grace=10)
    records = {r["index"]: r for r in map(json.loads, out.read_text().splitlines())}
    innocent = sum(1 for i, r in records.items() if i not in (SEGV_AT, EXIT_AT) and r["ok"] and r["result"] == i)
    return {
        "slots": slots,
        "exit": code,
        "results": len(records),
        "innocent_correct": innocent,
        "segv": records[SEGV_AT]["error"],
        "exit3": records[EXIT_AT]["error"],
        "first_crash_to_end_s": round(ended - crashed, 2),
        "batch_s": round(ended - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", choices=sorted(SLOTS), default="serial")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--heartbeat-ttl", type=int, default=10)
    parser.add_argument("--heartbeat-interval", type=float, default=2.0)
    args = parser.parse_args()
    server = EmbeddedRedis().start()
    beats = {"DW_HEARTBEAT_TTL": str(args.heartbeat_ttl), "DW_HEARTBEAT_INTERVAL": str(args.heartbeat_interval)}
    env = {**os.environ, "REDIS_URL": server.url, "DW_TASK_MODULES": "tests.reliability.tasks", **beats}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                print(json.dumps(one_run(server.url, args.slots, env, Path(tmp))), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
