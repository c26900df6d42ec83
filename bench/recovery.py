"""Kill-to-re-run time of a chunk whose worker is SIGKILLed mid-chunk, other workers alive.

    python -m bench.recovery --kills 10 [--json]

Two kinds of kill, `--kills` times each, on a private redis-server with the default heartbeat
settings:

- plain: a `worker` process group (its supervisor and its one worker process) is SIGKILLed while
  it runs a chunk; another plain `worker` is idle on the same queue;
- supervised: one worker process of a `worker --concurrency 2` is SIGKILLed while it runs a chunk;
  its supervisor and its sibling live on.

Measured: from the kill to the chunk's job being started again (its `started_at` changes), and to
the first result published by the new run. Each trial uses a queue of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from common import keys
from dispatcher.local import EmbeddedRedis, spawn

CHUNK = 40
"""Tasks in the chunk (each a 0.25 s sleep): long enough to be killed mid-way."""


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


class Trial:
    """Processes and Redis keys of one kill."""

    def __init__(self, url: str, client: redis.Redis, queue: str) -> None:
        self.url = url
        self.client = client
        self.queue = queue
        self.processes: list[subprocess.Popen[bytes]] = []

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "REDIS_URL": self.url, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "worker", "--queue", self.queue, "--quiet", *args]
        process = spawn(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def registered(self, name: str) -> bool:
        return bool(self.client.exists(keys.rq_worker_key(name)))

    def submit(self) -> str:
        env = {**os.environ, "REDIS_URL": self.url}
        lines = "".join("sleep 0.25\n" for _ in range(CHUNK))
        options = ["--no-wait", "--queue", self.queue, "--chunk-size", str(CHUNK), "--format", "text"]
        argv = [sys.executable, "-m", "dispatcher", "submit", "-", *options]
        done = subprocess.run(argv, input=lines, env=env, capture_output=True, text=True, check=True)
        return f"{done.stdout.strip()}-0"

    def runner_of(self, job_id: str) -> tuple[str, str] | None:
        name, started = self.client.hmget(keys.rq_job_key(job_id), ["worker_name", "started_at"])  # type: ignore[misc]
        status = self.client.hget(keys.rq_job_key(job_id), "status")
        if status != b"started" or not name or not started:
            return None
        return name.decode(), started.decode()

    def first_results_of_rerun(self, job_id: str, before: int) -> bool:
        batch = job_id.rsplit("-", 1)[0]
        return int(self.client.xlen(f"dw:batch:{batch}:results")) > before  # type: ignore[arg-type]

    def end(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _measure(trial: Trial, job_id: str, first: tuple[str, str], kill: Callable[[], None]) -> dict[str, float]:
    batch = job_id.rsplit("-", 1)[0]
    _wait(lambda: trial.client.xlen(f"dw:batch:{batch}:results"), 30, "the first results")
    kill()
    killed = time.monotonic()
    results = int(trial.client.xlen(f"dw:batch:{batch}:results"))  # type: ignore[arg-type]
    _wait(lambda: (r := trial.runner_of(job_id)) is not None and r[1] != first[1], 60, "the re-run")
    restarted = time.monotonic() - killed
    _wait(lambda: trial.first_results_of_rerun(job_id, results), 60, "the re-run's results")
    return {"rerun_s": round(restarted, 3), "first_result_s": round(time.monotonic() - killed, 3)}


def plain(url: str, client: redis.Redis, index: int) -> dict[str, float]:
    """One kill of a plain `worker`'s process group, another plain worker idle on the queue."""
    trial = Trial(url, client, f"plain{index}")
    try:
        victim = trial.worker("--name", f"victim{index}")
        _wait(lambda: trial.registered(f"victim{index}"), 30, "the victim")
        job_id = trial.submit()
        first = _wait(lambda: trial.runner_of(job_id), 30, "the victim to start the chunk")
        trial.worker("--name", f"rescuer{index}")
        _wait(lambda: trial.registered(f"rescuer{index}"), 30, "the rescuer")
        time.sleep(1.0)  # the rescuer settles in: it has seen that a chunk is started
        return _measure(trial, job_id, first, lambda: os.killpg(victim.pid, signal.SIGKILL))
    finally:
        trial.end()


def supervised(url: str, client: redis.Redis, index: int) -> dict[str, float]:
    """One kill of the worker process of a `worker --concurrency 2` that runs the chunk."""
    trial = Trial(url, client, f"sup{index}")
    try:
        trial.worker("--name", f"sup{index}", "--concurrency", "2")
        _wait(lambda: trial.registered(f"sup{index}-0") and trial.registered(f"sup{index}-1"), 30, "both processes")
        time.sleep(1.0)
        job_id = trial.submit()
        first = _wait(lambda: trial.runner_of(job_id), 30, "a process to start the chunk")
        pid = int(client.hget(keys.rq_worker_key(first[0]), "dw_pid"))  # type: ignore[arg-type]
        return _measure(trial, job_id, first, lambda: os.kill(pid, signal.SIGKILL))
    finally:
        trial.end()


def summary(rows: list[dict[str, float]], field: str) -> dict[str, float]:
    values = [row[field] for row in rows]
    return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills of each kind")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args(argv)
    server = EmbeddedRedis().start()
    client = redis.Redis.from_url(server.url)
    try:
        report: dict[str, Any] = {}
        for kind, run in (("plain", plain), ("supervised", supervised)):
            rows = [run(server.url, client, index) for index in range(options.kills)]
            report[kind] = {
                "rerun_s": summary(rows, "rerun_s"),
                "first_result_s": summary(rows, "first_result_s"),
                "trials": rows,
            }
    finally:
        client.close()
        server.stop()
    if options.json:
        print(json.dumps(report))
        return
    print(f"{'kill':<11} {'re-run p50':>10} {'max':>6} {'1st result p50':>15} {'max':>6}  ({options.kills} kills each)")
    for kind, row in report.items():
        print(
            f"{kind:<11} {row['rerun_s']['p50']:>10} {row['rerun_s']['max']:>6} "
            f"{row['first_result_s']['p50']:>15} {row['first_result_s']['max']:>6}"
        )


if __name__ == "__main__":
    main()
