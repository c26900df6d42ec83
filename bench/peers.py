"""The same workloads against plain RQ (one job per task), huey and ProcessPoolExecutor."""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench import peer_tasks
from bench.procs import PeakRSS
from bench.spec import SLEEP, Sizes, efficiency, percentile
from common import keys
from dispatcher.local import EmbeddedRedis, spawn, stop

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
Runs = list[dict[str, float]]


@contextmanager
def _processes(argvs: list[list[str]], url: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": url}
    procs = [spawn(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in argvs]
    try:
        yield procs
    finally:
        for proc in procs:
            stop(proc)


# ---- plain RQ: one job per task, SimpleWorker, JSON serializer ----------------------------------------


def _rq_workers(url: str, count: int) -> list[list[str]]:
    options = ["--worker-class", "rq.worker.SimpleWorker", "--serializer", "rq.serializers.JSONSerializer"]
    return [[str(BIN / "rq"), "worker", "--url", url, *options, "--quiet", "bench"] for _ in range(count)]


@contextmanager
def _rq(count: int) -> Iterator[tuple[Any, redis.Redis, list[int]]]:
    from rq import Queue
    from rq.serializers import JSONSerializer

    with EmbeddedRedis() as server, _processes(_rq_workers(server.url, count), server.url) as procs:
        client = redis.Redis.from_url(server.url, socket_timeout=120)
        while client.scard(keys.RQ_WORKERS) < count:
            time.sleep(0.05)
        yield Queue("bench", connection=client, serializer=JSONSerializer), client, [p.pid for p in procs]


def _rq_run(queue: Any, func: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
    from rq import Queue

    jobs = []
    for start in range(0, len(args), 1000):  # enqueue_many: one round trip per 1000 jobs
        part = [Queue.prepare_data(func, a, result_ttl=600) for a in args[start : start + 1000]]
        jobs += queue.enqueue_many(part)
    values = []
    for job in jobs:
        result = job.latest_result(timeout=120)
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise RuntimeError(f"RQ job {job.id} did not succeed: {result}")
        values.append(result.return_value)
    return values


def rq_w1(sizes: Sizes, reps: int) -> Runs:
    runs = []
    with _rq(2) as (queue, _client, _pids):
        _rq_run(queue, peer_tasks.add, [(1, 1)] * 20)
        for _ in range(reps):
            started = time.perf_counter()
            values = _rq_run(queue, peer_tasks.add, [(i, i) for i in range(sizes.w1_rq)])
            elapsed = time.perf_counter() - started
            _check_doubles(values)
            runs.append({"tasks_per_s": sizes.w1_rq / elapsed, "seconds": elapsed})
    return runs


def rq_w2(sizes: Sizes, reps: int) -> Runs:
    with _rq(1) as (queue, _client, _pids):
        return _latency(
            lambda i: queue.enqueue(peer_tasks.add, i, i, result_ttl=600).latest_result(timeout=60).return_value,
            sizes.w2,
            reps,
        )


def rq_w3(tasks: int, slots: int, reps: int) -> Runs:
    runs = []
    with _rq(slots) as (queue, _client, pids):
        for _ in range(reps):
            with PeakRSS(pids) as rss:
                started = time.perf_counter()
                _rq_run(queue, peer_tasks.sleep, [(SLEEP,)] * tasks)
                elapsed = time.perf_counter() - started
            runs.append({"seconds": elapsed, "efficiency": efficiency(tasks, slots, elapsed), "rss_mib": rss.peak})
    return runs


# ---- huey: RedisHuey with a result store and result notification -------------------------------------


@contextmanager
def _huey(kind: str, workers: int) -> Iterator[tuple[Any, list[int]]]:
    with EmbeddedRedis() as server:
        os.environ["BENCH_REDIS_URL"] = server.url  # read when bench.peer_huey builds its app
        loaded = sys.modules.get("bench.peer_huey")
        peer_huey = importlib.reload(loaded) if loaded else importlib.import_module("bench.peer_huey")

        argv = [str(BIN / "huey_consumer"), "bench.peer_huey.huey", "-k", kind, "-w", str(workers), "-q", "-C"]
        with _processes([argv], server.url) as procs:
            peer_huey.add(0, 0).get(blocking=True, timeout=30)  # consumer up
            yield peer_huey, [p.pid for p in procs]


def huey_w1(sizes: Sizes, reps: int) -> Runs:
    runs = []
    with _huey("process", 2) as (app, _pids):
        for _ in range(reps):
            started = time.perf_counter()
            pending = [app.add(i, i) for i in range(sizes.w1)]
            values = [r.get(blocking=True, timeout=120) for r in pending]
            elapsed = time.perf_counter() - started
            _check_doubles(values)
            runs.append({"tasks_per_s": sizes.w1 / elapsed, "seconds": elapsed})
    return runs


def huey_w2(sizes: Sizes, reps: int) -> Runs:
    with _huey("thread", 1) as (app, _pids):
        return _latency(lambda i: app.add(i, i).get(blocking=True, timeout=60), sizes.w2, reps)


def huey_w3(tasks: int, slots: int, reps: int) -> Runs:
    runs = []
    with _huey("thread", slots) as (app, pids):
        for _ in range(reps):
            with PeakRSS(pids) as rss:
                started = time.perf_counter()
                pending = [app.sleep(SLEEP) for _ in range(tasks)]
                for r in pending:
                    r.get(blocking=True, timeout=120)
                elapsed = time.perf_counter() - started
            runs.append({"seconds": elapsed, "efficiency": efficiency(tasks, slots, elapsed), "rss_mib": rss.peak})
    return runs


# ---- ProcessPoolExecutor: the no-broker ceiling ------------------------------------------------------


def ppe_w1(sizes: Sizes, reps: int) -> Runs:
    runs = []
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        list(pool.map(peer_tasks.add, range(100), range(100)))
        for _ in range(reps):
            started = time.perf_counter()
            values = list(pool.map(peer_tasks.add, range(sizes.w1), range(sizes.w1), chunksize=500))
            elapsed = time.perf_counter() - started
            _check_doubles(values)
            runs.append({"tasks_per_s": sizes.w1 / elapsed, "seconds": elapsed})
    return runs


def ppe_w2(sizes: Sizes, reps: int) -> Runs:
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        return _latency(lambda i: pool.submit(peer_tasks.add, i, i).result(), sizes.w2, reps)


def ppe_w3(tasks: int, slots: int, reps: int) -> Runs:
    runs = []
    with concurrent.futures.ProcessPoolExecutor(slots) as pool:
        list(pool.map(peer_tasks.sleep, [0.0] * slots))
        for _ in range(reps):
            started = time.perf_counter()
            list(pool.map(peer_tasks.sleep, [SLEEP] * tasks))
            elapsed = time.perf_counter() - started
            runs.append({"seconds": elapsed, "efficiency": efficiency(tasks, slots, elapsed)})
    return runs


def ppe_w4(sizes: Sizes, reps: int, workdir: Path) -> Runs:
    """The W4 file, parsed in this process and mapped over 2 processes (no broker, no result transport cost)."""
    path = workdir / f"w4-{sizes.w4}.txt"
    runs = []
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        for _ in range(reps):
            started = time.perf_counter()
            with path.open() as source:
                pairs = [(int(a), int(b)) for _name, a, b in (line.split() for line in source)]
            values = list(pool.map(peer_tasks.add, *zip(*pairs, strict=True), chunksize=500))
            elapsed = time.perf_counter() - started
            _check_doubles(values)
            runs.append({"tasks_per_s": len(values) / elapsed, "seconds": elapsed})
    return runs


# ---- shared ------------------------------------------------------------------------------------------


def _latency(call: Callable[[int], Any], count: int, reps: int) -> Runs:
    for i in range(30):
        call(i)
    runs = []
    for _ in range(reps):
        latencies = []
        for i in range(count):
            started = time.perf_counter()
            value = call(i)
            latencies.append(time.perf_counter() - started)
            if value != 2 * i:
                raise RuntimeError(f"wrong result {value!r} for add({i}, {i})")
        runs.append({"p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3})
    return runs


def _check_doubles(values: list[Any]) -> None:
    wrong = [i for i, v in enumerate(values) if v != 2 * i]
    if wrong:
        raise RuntimeError(f"{len(wrong)} wrong results, first at {wrong[0]}: {values[wrong[0]]!r}")
