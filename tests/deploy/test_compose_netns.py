"""`docker compose up --scale worker=5`, then `docker compose down` mid-batch and `up` again, run for
real as processes: each replica in its own network namespace, with docker-compose.yml's own commands,
environments and health checks (see tests/deploy/netns.py for how a container is stood in for)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.errors import ConfigurationError
from dispatcher.local import find_redis_server
from tests.deploy.compose import ROOT, resolved_model
from tests.deploy.netns import ComposeNet, Replica, remove_stale_namespaces
from tests.support import skip_or_fail, wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.netns, pytest.mark.timeout(600)]

SCALE = 5
"""`--scale worker=5`."""
PASSWORD = "netns-test-secret"
"""REDIS_PASSWORD for the run, so the password path (server, clients, health check) is exercised."""
IN_FLIGHT_TASKS = 100
"""Size of the batch that `docker compose down` interrupts."""


def redis_bin_dir() -> Path:
    """Where the redis-server and redis-cli that stand in for the Redis image are; skips if anything is missing."""
    if os.geteuid() != 0:
        skip_or_fail("creating network namespaces needs root")
    for command in ("ip", "unshare", "nsenter", "hostname"):
        if shutil.which(command) is None:
            skip_or_fail(f"{command} is not installed (iproute2, util-linux)")
    try:
        folder = Path(find_redis_server()).parent
    except ConfigurationError as exc:
        skip_or_fail(str(exc))
    if not (folder / "redis-cli").exists():
        skip_or_fail(f"no redis-cli beside {folder / 'redis-server'} for the Redis health check")
    probe = f"dwcompose-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        skip_or_fail(f"cannot create network namespaces here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return folder


@pytest.fixture
def compose(tmp_path: Path) -> Iterator[ComposeNet]:
    """The compose file's model, resolved with a Redis password, ready to run; everything removed after."""
    bin_dir = redis_bin_dir()
    model = resolved_model({"REDIS_PASSWORD": PASSWORD}, profiles=())
    remove_stale_namespaces()
    net = ComposeNet(model, tmp_path, bin_dir)
    try:
        net.create_network()
        yield net
    finally:
        net.close()


# --- what the right answers are, computed here, independently of the workers ---------------------------


def expected_value(task: str, args: list[Any]) -> Any:
    """The result each task of the example batch must have."""
    if task == "fib":
        a, b = 0, 1
        for _ in range(args[0]):
            a, b = b, a + b
        return a
    if task == "is_prime":
        n = args[0]
        return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))
    if task == "sha256":
        return hashlib.sha256(args[0].encode()).hexdigest()
    if task == "echo":
        return args[0] if len(args) == 1 else args
    operations = {
        "add": lambda a, b: a + b,
        "subtract": lambda a, b: a - b,
        "multiply": lambda a, b: a * b,
        "divide": lambda a, b: a / b,
        "mod": lambda a, b: a % b,
        "power": lambda a, b: a**b,
        "sleep": lambda a: a,
    }
    return operations[task](*args)


def example_tasks(path: Path) -> list[tuple[str, list[Any]]]:
    """The tasks of a text batch file, in order."""
    tasks = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            name, *tokens = shlex.split(line)
            tasks.append((name, [_scalar(t) for t in tokens]))
    return tasks


def _scalar(token: str) -> Any:
    try:
        return json.loads(token)
    except json.JSONDecodeError:
        return token


# --- steps ---------------------------------------------------------------------------------------------


def logs(net: ComposeNet) -> str:
    """The tail of every replica's output, for failure messages."""
    parts = []
    for replica in net.replicas.values():
        if replica.log.exists():
            parts.append(f"--- {replica.hostname}\n{replica.log.read_text(errors='replace')[-1500:]}")
    return "\n".join(parts)


def assert_healthy(net: ComposeNet, replica: Replica) -> None:
    result = net.wait_healthy(replica)
    assert result.returncode == 0, f"{replica.hostname} unhealthy: {result.stdout}{result.stderr}\n{logs(net)}"


def up(net: ComposeNet, redis: Replica, workers: list[Replica]) -> None:
    """`docker compose up`'s order: redis, then (depends_on redis healthy) the workers, all healthy."""
    if redis.process is None or redis.process.poll() is not None:
        net.start(redis)
        assert_healthy(net, redis)
    for worker in workers:
        net.start(worker)
    for worker in workers:
        assert_healthy(net, worker)


def fetch_results(net: ComposeNet, dispatcher: Replica, batch_id: str) -> list[dict[str, Any]]:
    """`docker compose run --rm dispatcher results BATCH --json`."""
    done = net.run(dispatcher, ["results", batch_id, "--json", "--ordered", "--timeout", "180"])
    assert done.returncode == 0, f"{done.stderr}\n{logs(net)}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def batch_progress(net: ComposeNet, dispatcher: Replica, batch_id: str) -> int:
    """How many results of the batch are in, from `dispatcher status --json`."""
    status = net.run(dispatcher, ["status", "--json"], timeout=60)
    assert status.returncode == 0, status.stderr
    (batch,) = [b for b in json.loads(status.stdout)["batches"] if b["batch_id"] == batch_id]
    done: int = batch["done"]
    return done


def host_of(worker_name: str, workers: list[Replica]) -> str:
    """The replica whose worker produced a result (worker names are HOSTNAME-PID)."""
    (host,) = [w.hostname for w in workers if worker_name.startswith(w.hostname + "-")]
    return host


def assert_each_task_once_and_correct(records: list[dict[str, Any]], tasks: list[tuple[str, list[Any]]]) -> None:
    assert sorted(r["index"] for r in records) == list(range(len(tasks))), "a task is missing or repeated"
    for record in records:
        task, args = tasks[record["index"]]
        assert (record["task"], record["args"]) == (task, args)
        assert record["ok"], record
        assert record["result"] == pytest.approx(expected_value(task, args)), record


# --- the test ------------------------------------------------------------------------------------------


def test_compose_up_scale_5_then_down_mid_batch_loses_nothing(
    compose: ComposeNet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    redis = compose.add_replica("redis", 1)
    workers = [compose.add_replica("worker", i) for i in range(1, SCALE + 1)]
    dispatcher = compose.add_replica("dispatcher", 1)

    # `docker compose up --scale worker=5`: the dispatcher service runs its own command on the example.
    compose.start(redis)
    assert_healthy(compose, redis)
    unauthenticated = compose.exec(redis, ["redis-cli", "ping"], timeout=30)
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr, "Redis must demand REDIS_PASSWORD"
    not_yet = compose.run(workers[0], ["worker", "--check"])
    assert not_yet.returncode == 1, "no worker runs on this host yet: the health check must fail"
    up(compose, redis, workers)
    shown = compose.run(dispatcher)
    assert shown.returncode == 0, f"{shown.stdout}{shown.stderr}\n{logs(compose)}"
    summary = re.search(r"^batch (\w+): (\d+) tasks, (\d+) ok, 0 failed", shown.stderr, re.MULTILINE)
    assert summary, shown.stderr
    example_file = ROOT / compose.argv(dispatcher)[-1]
    tasks = example_tasks(example_file)
    assert int(summary.group(2)) == int(summary.group(3)) == len(tasks)
    printed = re.findall(r"^Task (\d+): ", shown.stdout, re.MULTILINE)
    assert printed == [str(i + 1) for i in range(len(tasks))], "the dispatcher prints each result once, in order"

    records = fetch_results(compose, dispatcher, summary.group(1))
    assert_each_task_once_and_correct(records, tasks)
    per_worker = Counter(host_of(r["worker"], workers) for r in records)
    assert len(per_worker) >= SCALE - 1, f"work did not spread: {dict(per_worker)}"

    # `docker compose down` while a batch is in flight: SIGTERM to every worker at once.
    in_flight = tmp_path / "in-flight.txt"
    in_flight.write_text("sleep 0.2\n" * IN_FLIGHT_TASKS)
    # Small chunks: a warm stop finishes the chunk it runs, and the automatic size would make one
    # chunk per worker here (dispatcher/chunking.py), leaving nothing in flight at the stop.
    submitted = compose.run(dispatcher, ["submit", "--no-wait", "--chunk-size", "2", str(in_flight)])
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    progressed = lambda: batch_progress(compose, dispatcher, batch_id) >= IN_FLIGHT_TASKS // 10  # noqa: E731
    wait_until(progressed, 120, "the in-flight batch to make progress", interval=0.1)
    stopped = compose.stop(*workers)
    done_at_down = batch_progress(compose, dispatcher, batch_id)
    (redis_stopped,) = compose.stop(redis)
    for worker, outcome in zip(workers, stopped, strict=True):
        assert not outcome.killed, f"{worker.hostname} needed SIGKILL after its stop_grace_period"
        assert outcome.returncode == 0, f"{worker.hostname} exited {outcome.returncode}\n{logs(compose)}"
    assert not redis_stopped.killed and redis_stopped.returncode == 0
    assert done_at_down < IN_FLIGHT_TASKS, "the batch finished before the shutdown: nothing was in flight"

    # `docker compose up` again: Redis reloads its append-only file from the volume, workers finish.
    up(compose, redis, workers)
    resumed = fetch_results(compose, dispatcher, batch_id)
    assert_each_task_once_and_correct(resumed, [("sleep", [0.2])] * IN_FLIGHT_TASKS)

    elapsed = time.monotonic() - started
    with capsys.disabled():
        counts = ", ".join(f"{w.hostname}: {per_worker.get(w.hostname, 0)}" for w in workers)
        print(f"\n[compose netns] example batch of {len(tasks)} tasks over {SCALE} workers: {counts}")
        print(
            f"[compose netns] down mid-batch at {done_at_down}/{IN_FLIGHT_TASKS} results, all "
            f"{IN_FLIGHT_TASKS} after up; warm stops took {max(s.seconds for s in stopped):.1f} s at most"
        )
        print(f"[compose netns] whole scenario: {elapsed:.1f} s")
