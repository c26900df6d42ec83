"""W1-W4 against this system: the dispatcher's Python functions and real `worker` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from bench.procs import PeakRSS, cpu_seconds
from bench.spec import Sizes, efficiency, percentile
from common.connection import connect
from common.settings import Settings
from common.wire import TaskResult, TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.local import EmbeddedRedis, LocalWorkers, wait_for_workers
from dispatcher.session import Session

ROOT = Path(__file__).resolve().parent.parent


class Checker:
    """A result sink that checks every result: ok, and (for add(i, i)) equal to 2 i."""

    def __init__(self, doubles: bool = True) -> None:
        self.count = 0
        self.bad = 0
        self.doubles = doubles

    def __call__(self, result: TaskResult) -> None:
        self.count += 1
        if not result.ok or (self.doubles and result.value != 2 * result.args[0]):
            self.bad += 1


def _cluster(
    processes: int, worker_args: tuple[str, ...] = ()
) -> tuple[EmbeddedRedis, LocalWorkers, redis.Redis, Settings]:
    server = EmbeddedRedis().start()
    workers = LocalWorkers(server.url, processes, list(worker_args)).start()
    settings = Settings.from_env(redis_url=server.url)
    client = connect(settings)
    wait_for_workers(client, processes)
    return server, workers, client, settings


def _stop(server: EmbeddedRedis, workers: LocalWorkers) -> None:
    workers.stop()
    server.stop()


class CpuMeter:
    """CPU time spent by this process (the dispatcher), the worker processes and Redis since creation."""

    def __init__(self, worker_pids: list[int], redis_pid: int) -> None:
        self.worker_pids = worker_pids
        self.redis_pid = redis_pid
        self.start = (time.process_time(), cpu_seconds(worker_pids), cpu_seconds([redis_pid]))

    def per_task(self, tasks: int) -> dict[str, float]:
        """Microseconds of CPU per task in each part of the system."""
        now = (time.process_time(), cpu_seconds(self.worker_pids), cpu_seconds([self.redis_pid]))
        parts = ("dispatcher_cpu_us", "workers_cpu_us", "redis_cpu_us")
        return {
            part: (after - before) / tasks * 1e6 for part, after, before in zip(parts, now, self.start, strict=True)
        }


def _adds(n: int) -> Iterator[TaskSpec]:
    return (TaskSpec(i, "add", [i, i]) for i in range(n))


def w1(sizes: Sizes, reps: int) -> list[dict[str, float]]:
    """10,000 add(i, i) on 2 worker processes: submit all, await all, check all."""
    server, workers, client, settings = _cluster(2)
    try:
        submit_batch(client, settings, _adds(200), SubmitOptions(), Checker())  # warm-up
        runs = []
        worker_pids = [p.pid for p in workers.processes]
        assert server.process is not None
        for _ in range(reps):
            sink = Checker()
            cpu = CpuMeter(worker_pids, server.process.pid)
            started = time.perf_counter()
            submit_batch(client, settings, _adds(sizes.w1), SubmitOptions(), sink)
            elapsed = time.perf_counter() - started
            if sink.count != sizes.w1 or sink.bad:
                raise RuntimeError(f"W1: {sink.count} results, {sink.bad} wrong")
            runs.append({"tasks_per_s": sizes.w1 / elapsed, "seconds": elapsed, **cpu.per_task(sizes.w1)})
        return runs
    finally:
        _stop(server, workers)


def w2(sizes: Sizes, reps: int) -> list[dict[str, float]]:
    """One worker, sequential submit-one-then-await round trips, chunk size 1."""
    server, workers, client, settings = _cluster(1)
    try:
        runs = []
        with Session(client, settings) as session:
            for i in range(30):
                session.call("add", i, i)
            for _ in range(reps):
                latencies = []
                for i in range(sizes.w2):
                    started = time.perf_counter()
                    result = session.call("add", i, i)
                    latencies.append(time.perf_counter() - started)
                    if not result.ok or result.value != 2 * i:
                        raise RuntimeError(f"W2: wrong result {result}")
                runs.append({"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3})
        return runs
    finally:
        _stop(server, workers)


W3_MODES = {"async": "--async-slots", "threads": "--threads"}
W3_LABELS = {"async": "async slots", "threads": "threads"}
"""How W3's slots are made: `async` (the default) awaits the built-in sleep's async form on one event
loop per process (`worker --async-slots N`); `threads` runs it on N threads (`worker --threads N`)."""


def w3(tasks: int, slots: int, reps: int, processes: int = 2, mode: str = "async") -> list[dict[str, float]]:
    """`tasks` x sleep(0.05) over `slots` slots, spread over `processes` worker processes (see W3_MODES)."""
    server, workers, client, settings = _cluster(processes, (W3_MODES[mode], str(slots // processes)))
    try:
        pids = [p.pid for p in workers.processes]
        runs = []
        for _ in range(reps):
            sink = Checker(doubles=False)
            with PeakRSS(pids) as rss:
                started = time.perf_counter()
                items = (TaskSpec(i, "sleep", [0.05]) for i in range(tasks))
                submit_batch(client, settings, items, SubmitOptions(), sink)
                elapsed = time.perf_counter() - started
            if sink.count != tasks or sink.bad:
                raise RuntimeError(f"W3: {sink.count} results, {sink.bad} failed")
            runs.append({"seconds": elapsed, "efficiency": efficiency(tasks, slots, elapsed), "rss_mib": rss.peak})
        return runs
    finally:
        _stop(server, workers)


def w4(sizes: Sizes, reps: int, workdir: Path) -> list[dict[str, float]]:
    """A batch of sizes.w4 `add` lines from a file, through a dispatcher process whose peak RSS is read."""
    path = workdir / f"w4-{sizes.w4}.txt"
    if not path.exists():
        with path.open("w") as out:
            out.writelines(f"add {i} {i}\n" for i in range(sizes.w4))
    runs = []
    for _ in range(reps):
        server, workers, client, _settings = _cluster(2)
        try:
            assert server.process is not None
            worker_pids, redis_pid = [p.pid for p in workers.processes], server.process.pid
            before = cpu_seconds(worker_pids), cpu_seconds([redis_pid])
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            argv = [sys.executable, "-m", "bench.w4_dispatch", server.url, str(path)]
            done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"W4 dispatcher failed: {done.stderr[-2000:]}")
            stats = json.loads(done.stdout.strip().splitlines()[-1])
            stats["workers_cpu_us"] = (cpu_seconds(worker_pids) - before[0]) / stats["tasks"] * 1e6
            stats["redis_cpu_us"] = (cpu_seconds([redis_pid]) - before[1]) / stats["tasks"] * 1e6
            peak = int(client.info("memory")["used_memory_peak"])
            stats["redis_peak_mib"] = peak / 2**20
            runs.append(stats)
        finally:
            _stop(server, workers)
    return runs
