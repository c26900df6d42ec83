"""Fault-injection harness: private redis-servers, real worker and dispatcher processes, output checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from common import keys
from dispatcher.local import EmbeddedRedis, spawn, stop
from tests.conftest import current_job
from tests.support import skip_or_fail, wait_until

__all__ = ["current_job", "skip_or_fail", "wait_until"]  # shared with the tests that import them from here

FAST_RECOVERY = {"DW_HEARTBEAT_INTERVAL": "0.5", "DW_HEARTBEAT_TTL": "2"}
"""Short heartbeats, so tests that do not measure recovery time do not wait for it either."""

TASK_MODULE = "tests.reliability.tasks"
"""Extra tasks every test worker serves (see tasks.py)."""

FIGURES = Path(os.environ.get("DW_RELIABILITY_FIGURES", "")) if os.environ.get("DW_RELIABILITY_FIGURES") else None
"""Where tests append the figures they measure (JSON lines), when set."""


def record_figure(name: str, **values: Any) -> None:
    """Print a measured figure (shown with -s or -rA) and append it to $DW_RELIABILITY_FIGURES if set."""
    line = json.dumps({"figure": name, **values})
    print(line)
    if FIGURES is not None:
        with FIGURES.open("a") as out:
            out.write(line + "\n")


class RestartableRedis(EmbeddedRedis):
    """A private redis-server whose process can be killed and started again on the same port and data dir."""

    def crash(self) -> None:
        """SIGKILL the server (the data dir stays)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


@pytest.fixture
def private_redis() -> Iterator[Callable[..., RestartableRedis]]:
    """Factory for private redis-servers (for faults that would disturb the shared one); all stopped after."""
    servers: list[RestartableRedis] = []

    def make(*extra_args: str, binary: str | None = None) -> RestartableRedis:
        server = RestartableRedis(binary=binary, extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@dataclass
class Procs:
    """Real worker and dispatcher processes of one test, with their logs; all stopped after the test."""

    tmp: Path
    url: str
    env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.url,
            "PYTHONUNBUFFERED": "1",
            "DW_TASK_MODULES": TASK_MODULE,
            **self.env,
            **(extra or {}),
        }

    def worker(
        self, *args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start `python -m worker ARGS` (optionally under a prefix such as `ip netns exec NS`)."""
        log = self.tmp / f"worker-{len(self.processes)}.log"
        argv = [*prefix, sys.executable, "-m", "worker", *args]
        with log.open("wb") as out:
            process = spawn(argv, env=self._env(env), stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.logs[process.pid] = log
        return process

    def dispatcher(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `python -m dispatcher ARGS` with stdout and stderr in files (see out()/err())."""
        index = len(self.processes)
        out, err = self.tmp / f"dispatcher-{index}.out", self.tmp / f"dispatcher-{index}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = spawn(
                [sys.executable, "-m", "dispatcher", *args], env=self._env(env), stdout=stdout, stderr=stderr
            )
        self.processes.append(process)
        self.logs[process.pid] = err
        return process

    def run(
        self, *args: str, env: dict[str, str] | None = None, input_text: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m dispatcher ARGS` to completion."""
        return subprocess.run(
            [sys.executable, "-m", "dispatcher", *args],
            env=self._env(env),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return (self.tmp / f"dispatcher-{self.processes.index(process)}.out").read_text()

    def log(self, process: subprocess.Popen[bytes]) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            stop(process, grace=10)
            for pipe in (process.stdin, process.stdout, process.stderr):  # a failed test may leave them open
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def procs_factory(tmp_path: Path) -> Iterator[Callable[..., Procs]]:
    """Build a Procs bound to a Redis URL; every process started through it is stopped after the test."""
    made: list[Procs] = []

    def make(url: str, env: dict[str, str] | None = None) -> Procs:
        procs = Procs(tmp_path, url, dict(env or {}))
        made.append(procs)
        return procs

    yield make
    for procs in made:
        procs.stop_all()


def write_tasks(path: Path, lines: Sequence[str]) -> Path:
    """Write a text batch file."""
    path.write_text("".join(line + "\n" for line in lines))
    return path


def parse_json_results(text: str) -> list[dict[str, Any]]:
    """The `--json` output: one object per line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_exactly_once(records: list[dict[str, Any]], total: int) -> dict[int, dict[str, Any]]:
    """Every index 0..total-1 appears exactly once; returns the records by index."""
    by_index: dict[int, dict[str, Any]] = {}
    duplicated = []
    for record in records:
        if record["index"] in by_index:
            duplicated.append(record["index"])
        by_index[record["index"]] = record
    missing = sorted(set(range(total)) - set(by_index))
    assert not duplicated, f"{len(duplicated)} duplicated results, e.g. {duplicated[:10]}"
    assert not missing, f"{len(missing)} tasks have no result, e.g. {missing[:10]}"
    assert len(by_index) == total, f"unexpected indexes {sorted(set(by_index) - set(range(total)))[:10]}"
    return by_index


def wait_outage_noticed(procs: Procs, workers: Sequence[subprocess.Popen[bytes]]) -> None:
    """Until every worker has logged that Redis went away (its heartbeat thread says so once per outage,
    whatever the worker was doing)."""
    for worker in workers:
        wait_until(lambda w=worker: "heartbeat failed" in procs.log(w), 30, f"worker {worker.pid} to notice")


def start_chunk_mid_run(
    procs: Procs, client: redis.Redis, tmp_path: Path, worker: str, lines: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    """Submit `lines` as one chunk (`dispatcher submit --json`), wait until `worker` runs it and its
    first results are in the stream; return the dispatcher process and the batch id."""
    batch = write_tasks(tmp_path / f"{worker}.txt", lines)
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", str(len(lines)))
    job_id = wait_until(lambda: current_job(client, worker), 30, f"{worker} to take the chunk")
    batch_id = job_id.rsplit("-", 1)[0]
    wait_until(lambda: stream_entries(client, batch_id), 30, "the first results")  # mid-chunk
    return dispatcher, batch_id


def live_worker_names(client: redis.Redis) -> set[str]:
    """Names of the workers registered in RQ right now."""
    return {raw.decode().removeprefix(keys.RQ_WORKER_PREFIX) for raw in client.smembers(keys.RQ_WORKERS)}  # type: ignore[union-attr]


def stream_entries(client: redis.Redis, batch_id: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of a batch's result stream."""
    return client.xrange(f"dw:batch:{batch_id}:results")  # type: ignore[return-value]
