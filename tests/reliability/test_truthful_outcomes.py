"""Outcomes that tell the truth: a dispatcher killed or starved while submitting, Redis out of memory,
Ctrl-C and exit 3 while a batch is in flight. Real redis-servers, real worker and dispatcher processes."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import redis

from common import keys
from dispatcher.local import spawn
from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    RestartableRedis,
    assert_exactly_once,
    parse_json_results,
    record_figure,
    write_tasks,
)
from tests.support import wait_until

pytestmark = pytest.mark.reliability

EXIT_INCOMPLETE = 5


def stdin_dispatcher(
    procs: Procs, *args: str, env: dict[str, str] | None = None, stdout: int | IO[bytes] = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """`dispatcher submit - ARGS` reading a pipe the test writes to (so it stops mid-input on demand)."""
    err = procs.tmp / f"dispatcher-{len(procs.processes)}.err"
    with err.open("wb") as stderr:
        process = spawn(
            [sys.executable, "-m", "dispatcher", "submit", "-", *args],
            env=procs._env(env),
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
        )
    procs.processes.append(process)
    procs.logs[process.pid] = err
    return process


def feed(process: subprocess.Popen[bytes], lines: list[str]) -> None:
    assert process.stdin is not None
    process.stdin.write("".join(line + "\n" for line in lines).encode())
    process.stdin.flush()


def announced_batch(procs: Procs, process: subprocess.Popen[bytes]) -> str:
    found = wait_until(lambda: re.search(r"batch (\w+): submitting", procs.log(process)), 30, "the batch id")
    return str(found.group(1))


def unread_bytes(pipe: IO[bytes]) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]


def record(client: redis.Redis, batch_id: str) -> dict[str, str]:
    raw: dict[bytes, bytes] = client.hgetall(f"dw:batch:{batch_id}")  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


def status_of(procs: Procs, batch_id: str) -> dict[str, object]:
    snapshot = procs.run("status", "--json")
    assert snapshot.returncode == 0, snapshot.stderr
    return next(b for b in json.loads(snapshot.stdout)["batches"] if b["batch_id"] == batch_id)


def test_a_dispatcher_killed_mid_submission_leaves_an_abandoned_batch(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs]
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    procs.worker()
    # A lease far longer than the test: only the same-host check of the submitter's pid can settle it.
    dispatcher = stdin_dispatcher(
        procs, "--json", "--chunk-size", "10", "--no-check", env={"DW_SUBMITTER_LEASE": "600"}
    )
    batch_id = announced_batch(procs, dispatcher)
    feed(dispatcher, [f"add {i} 1" for i in range(500)])
    wait_until(lambda: int(record(real_client, batch_id).get("sent", 0)) >= 500, 30, "500 tasks sent")
    dispatcher.kill()  # mid-input: the rest of it never comes
    dispatcher.wait()
    assert dispatcher.stdin is not None
    dispatcher.stdin.close()

    started = time.monotonic()
    fetched = procs.run("results", batch_id, "--json", "--timeout", "120")
    record_figure("abandoned_verdict_seconds_same_host", seconds=round(time.monotonic() - started, 2))
    assert fetched.returncode == EXIT_INCOMPLETE, (fetched.returncode, fetched.stderr)
    by_index = assert_exactly_once(parse_json_results(fetched.stdout), 500)
    assert all(r["ok"] and r["result"] == i + 1 for i, r in by_index.items())
    assert "abandoned" in fetched.stderr and "500 tasks" in fetched.stderr, fetched.stderr
    assert "never submitted" in fetched.stderr and "unknown" in fetched.stderr, fetched.stderr

    saved = record(real_client, batch_id)
    assert (saved["state"], saved["total"], saved["sent"], saved["read"]) == ("abandoned", "500", "500", "500")
    shown = status_of(procs, batch_id)
    assert (shown["state"], shown["sent"], shown["read"]) == ("abandoned", 500, 500), shown
    again = procs.run("results", batch_id, "--json", "--timeout", "120")  # a second reader agrees
    assert again.returncode == EXIT_INCOMPLETE and len(parse_json_results(again.stdout)) == 500


def test_the_lease_holds_while_the_output_is_blocked(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    lease = 2
    procs = procs_factory(redis_url, FAST_RECOVERY)
    procs.worker()
    dispatcher = stdin_dispatcher(
        procs,
        "--json",
        "--chunk-size",
        "50",
        "--no-check",
        env={"DW_SUBMITTER_LEASE": str(lease)},
        stdout=subprocess.PIPE,
    )
    batch_id = announced_batch(procs, dispatcher)
    first = 3000  # about 400 KB of JSON results: far more than a pipe holds, and nobody reads it
    feed(dispatcher, [f"add {i} 1" for i in range(first)])

    def blocked() -> bool:  # every task sent has its result, and the dispatcher's output is not read
        fields = record(real_client, batch_id)
        return 0 < int(fields.get("sent", 0)) <= int(fields.get("done", 0))

    wait_until(blocked, 60, "the results of what was sent")

    # The dispatcher is stuck writing to stdout; its lease must still be renewed, several times over.
    lease_key = f"dw:batch:{batch_id}:submitter"
    renewals = {"seen": 0, "last": 0}

    def renewed_three_times() -> bool:
        ttl = real_client.pttl(lease_key)
        assert ttl > 0, "the submitter lease expired while its dispatcher was alive"  # type: ignore[operator]
        if ttl > renewals["last"]:  # type: ignore[operator]
            renewals["seen"] += 1
        renewals["last"] = ttl  # type: ignore[assignment]
        return renewals["seen"] > 3

    wait_until(renewed_three_times, 10 * lease, "the lease to be renewed while the output is blocked")
    assert record(real_client, batch_id)["state"] == "submitting"
    assert dispatcher.stdout is not None
    # Its stdout pipe holds tens of KB nobody read (a pipe takes 64 KB, in page-sized pieces) while
    # about 400 KB are due: the dispatcher is blocked writing to it.
    stdout = dispatcher.stdout
    wait_until(lambda: unread_bytes(stdout) >= 32_768, 60, "the dispatcher's output to fill its pipe")

    out = (tmp_path / "reader.out").open("wb")
    reader = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "results", batch_id, "--json", "--timeout", "120"],
        env=procs._env(None),
        stdout=out,
        stderr=subprocess.PIPE,
    )
    feed(dispatcher, [f"add {i} 1" for i in range(first, first + 100)])
    assert dispatcher.stdin is not None
    dispatcher.stdin.close()
    written = dispatcher.stdout.read()
    dispatcher.stdout.close()
    assert dispatcher.wait(120) == 0
    assert len(written.splitlines()) == first + 100
    _, err = reader.communicate(timeout=120)
    out.close()
    assert reader.returncode == 0, err
    assert_exactly_once(parse_json_results((tmp_path / "reader.out").read_text()), first + 100)


def test_ctrl_c_and_exit_3_say_the_batch_goes_on(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()
    procs = procs_factory(server.url, {**FAST_RECOVERY, "DW_OUTAGE_GRACE": "1"})
    batch = write_tasks(tmp_path / "batch.txt", ["add 1 2"])  # no worker: the dispatcher just waits
    client = redis.Redis.from_url(server.url)

    interrupted = procs.dispatcher("submit", str(batch), "--no-check")
    batch_id = announced_batch(procs, interrupted)
    wait_until(lambda: record(client, batch_id).get("state") == "submitted", 30, "the batch to be submitted")
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(30) == 130
    message = procs.log(interrupted)
    assert f"batch {batch_id} goes on" in message, message
    assert f"`dispatcher results {batch_id}`" in message and f"`dispatcher cancel {batch_id}`" in message, message

    cut_off = procs.dispatcher("submit", str(batch), "--no-check")
    batch_id = announced_batch(procs, cut_off)
    wait_until(lambda: record(client, batch_id).get("state") == "submitted", 30, "the batch to be submitted")
    client.close()
    server.crash()
    assert cut_off.wait(60) == 3
    message = procs.log(cut_off)
    assert f"`dispatcher results {batch_id}`" in message and f"`dispatcher cancel {batch_id}`" in message, message


def test_redis_out_of_memory_while_submitting(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()
    client = redis.Redis.from_url(server.url)
    used = int(client.info("memory")["used_memory"])  # type: ignore[index]
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 1_000_000)  # room for a part of the batch only
    procs = procs_factory(server.url, FAST_RECOVERY)
    batch = write_tasks(tmp_path / "batch.txt", [f"add {i} 1" for i in range(200_000)])

    done = procs.run("submit", str(batch), "--no-check", "--chunk-size", "100")
    assert done.returncode == 3, done.stderr
    batch_id = re.search(r"batch (\w+): submitting", done.stderr).group(1)  # type: ignore[union-attr]
    sent = int(record(client, batch_id)["sent"])
    assert 0 < sent < 200_000
    assert "out of memory" in done.stderr and f"{sent} tasks were enqueued" in done.stderr, done.stderr
    assert "go on" in done.stderr and f"`dispatcher cancel {batch_id}`" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    # The record cannot say `submitting` for a day: the next reader settles it (and records it once it can).
    shown = status_of(procs, batch_id)
    assert shown["state"] in ("aborted", "abandoned") and shown["sent"] == sent, shown
    client.config_set("maxmemory", 0)
    procs.worker()
    fetched = procs.run("results", batch_id, "--json", "--timeout", "120")
    assert fetched.returncode == EXIT_INCOMPLETE, fetched.stderr
    assert_exactly_once(parse_json_results(fetched.stdout), sent)
    assert "never submitted" in fetched.stderr, fetched.stderr
    assert record(client, batch_id)["state"] in ("aborted", "abandoned")
    client.close()


def test_workers_ride_out_redis_out_of_memory(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = private_redis()
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, FAST_RECOVERY)
    worker = procs.worker("--name", "frugal")
    wait_until(lambda: client.hget(keys.rq_worker_key("frugal"), "dw_pid"), 30, "the worker to register")
    pid = client.hget(keys.rq_worker_key("frugal"), "dw_pid")
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 300_000)  # type: ignore[index]
    total = 400  # each result is a 4,000-digit number: 1.6 MB of results that do not fit
    batch = write_tasks(tmp_path / "batch.txt", ["power 10 3999"] * total)
    submitted = procs.run("submit", str(batch), "--no-wait", "--chunk-size", "20")
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()

    wait_until(lambda: "maxmemory" in procs.log(worker), 60, "the worker to meet the memory limit")
    # It keeps meeting it (Redis takes a small write, not the results): it backs off, more each time.
    wait_until(lambda: "pausing 1.0 s first" in procs.log(worker), 60, "the worker to back off")
    client.config_set("maxmemory", 0)
    fetched = procs.run("results", batch_id, "--json", "--timeout", "120")
    assert fetched.returncode == 0, fetched.stderr
    by_index = assert_exactly_once(parse_json_results(fetched.stdout), total)
    assert all(r["ok"] and r["result"] == 10**3999 for r in by_index.values())
    assert worker.poll() is None and client.hget(keys.rq_worker_key("frugal"), "dw_pid") == pid  # never restarted
    assert "Traceback" not in procs.log(worker), procs.log(worker)[-3000:]
    client.close()
