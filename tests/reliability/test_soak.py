"""Guarantee 1, soak variant: a big batch while a worker is SIGKILLed every 2 s and replaced.

DW_SOAK_TASKS sets the batch size (default 200,000; how long that takes is in docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from tests.reliability.conftest import FAST_RECOVERY, Procs, current_job, record_figure, write_tasks
from tests.support import wait_until

pytestmark = pytest.mark.reliability

SOAK_TASKS = int(os.environ.get("DW_SOAK_TASKS", "200000"))
SOAK_CHUNK = int(os.environ.get("DW_SOAK_CHUNK", "1000"))
"""Tasks per chunk (DW_SOAK_CHUNK)."""
KILL_EVERY = 2.0
WORKERS = 3


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the supervisor's worker process)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def pick_victim(client: redis.Redis, workers: list[subprocess.Popen[bytes]], rng: random.Random) -> int:
    """Index of a worker to kill: one that is running a chunk if there is one (the harder case)."""
    busy = [
        i
        for i, w in enumerate(workers)
        for child in child_pids(w.pid)
        if current_job(client, f"{socket.gethostname()}-{child}")
    ]
    return rng.choice(busy) if busy else rng.randrange(len(workers))


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a `worker` supervisor and its worker process: a machine that vanished, nothing warm."""
    children = child_pids(process.pid)
    process.kill()
    process.wait()
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_soak_kill_a_worker_every_two_seconds(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, {**FAST_RECOVERY, "DW_JOB_RETRIES": "20"})
    workers = [procs.worker() for _ in range(WORKERS)]
    wait_until(lambda: real_client.scard(keys.RQ_WORKERS) >= WORKERS, 30, "the workers")
    # 0.1 ms of sleep per task: a chunk lasts long enough for kills to land inside it, after some of
    # its results were published (the publisher flushes every 0.2 s), so de-duplication is exercised.
    batch = write_tasks(tmp_path / "soak.txt", [f"rt.nap 0.0001 {i}" for i in range(SOAK_TASKS)])
    started = time.monotonic()
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(SOAK_CHUNK))
    rng = random.Random(5)
    kills = 0
    next_kill = time.monotonic() + KILL_EVERY
    while dispatcher.poll() is None:
        if time.monotonic() - started > 900:
            pytest.fail("soak did not finish in 15 minutes")
        time.sleep(max(0.0, next_kill - time.monotonic()))
        next_kill += KILL_EVERY
        if dispatcher.poll() is not None:
            break
        victim = workers.pop(pick_victim(real_client, workers, rng))
        kill_tree(victim)
        kills += 1
        workers.append(procs.worker())
    elapsed = time.monotonic() - started

    assert dispatcher.returncode == 0, procs.log(dispatcher)[-3000:]
    counts: Counter[int] = Counter()
    wrong = 0
    with (tmp_path / f"dispatcher-{procs.processes.index(dispatcher)}.out").open() as out:
        for line in out:
            record = json.loads(line)
            counts[record["index"]] += 1
            wrong += not (record["ok"] and record["result"] == record["index"])
    batch_id = next(k for k in real_client.keys("dw:batch:*:results")).decode().split(":")[2]
    published = sum(len(json.loads(f[b"r"])) for _id, f in real_client.xrange(f"dw:batch:{batch_id}:results"))
    lost = SOAK_TASKS - len(counts.keys() & set(range(SOAK_TASKS)))
    duplicated = sum(n - 1 for n in counts.values())
    record_figure(
        "soak",
        tasks=SOAK_TASKS,
        kills=kills,
        lost=lost,
        duplicated=duplicated,
        wrong=wrong,
        results_published_again=published - SOAK_TASKS,
        seconds=round(elapsed, 1),
    )
    assert kills >= 1, "the batch ended before any kill: raise DW_SOAK_TASKS"
    assert (lost, duplicated, wrong) == (0, 0, 0)
