"""The idle fleet: Redis commands per second per worker for `worker --concurrency W`, and its start time.

    python -m bench.fleet --workers 2,20,100,200 --window 30 [--json]

For each W: a private redis-server, one `worker --concurrency W` (idle: no batch is submitted), the
time until all W processes are registered, then INFO commandstats before and after a window of
`--window` seconds once the start-up has settled, and MONITOR over the same window. Two counts:
every command, those that Lua scripts run included (commandstats counts them), and the top-level
commands clients send (a script counts once); the benchmark's own INFO and MONITOR left out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import redis

from common import keys
from dispatcher.local import EmbeddedRedis, spawn, stop

SETTLE = 15.0
"""Seconds after registration before the window opens: start-up commands (each process's first
maintenance run, its CLIENT LIST) are not idle cost."""


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats), the INFO command itself left out."""
    info: dict[str, Any] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in info.items()}
    calls.pop("info", None)
    return calls


class TopLevelCounter:
    """Counts the commands clients send, by name, from MONITOR: a script counts once, the commands it
    runs not at all (MONITOR shows those as coming from "lua"). Opened before the window, so that
    its own connection's commands fall outside it."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client  # the monitor's connection lives as long as its client
        self.monitor = client.monitor()  # type: ignore[no-untyped-call]
        self.monitor.__enter__()

    def count(self, seconds: float) -> Counter[str]:
        """Commands seen over the next `seconds`, the INFO calls left out; closes the monitor."""
        counts: Counter[str] = Counter()
        connection: Any = self.monitor.connection
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                if not connection.can_read(timeout=0.2):
                    continue
                line = connection.read_response()
                text = line.decode(errors="replace") if isinstance(line, bytes) else str(line)
                source, _, command = text.partition("] ")
                if source.endswith(" lua") or not command:
                    continue
                counts[command.split(" ", 1)[0].strip('"').lower()] += 1
        finally:
            self.monitor.__exit__()
            self.client.close()
        counts.pop("info", None)
        return counts


def registered(client: redis.Redis) -> int:
    """Workers registered in RQ's worker set."""
    return int(client.scard(keys.RQ_WORKERS))


def measure(workers: int, window: float, settle: float = SETTLE, source: str | None = None) -> dict[str, Any]:
    """Start `worker --concurrency workers` on a fresh Redis, idle; return its start time and command rates."""
    server = EmbeddedRedis(extra_args=["--maxclients", "20000"]).start()
    client = redis.Redis.from_url(server.url)
    env = {**os.environ, "REDIS_URL": server.url, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "worker", "--concurrency", str(workers), "--quiet", "--name", "fleet"]
    process = spawn(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=source)
    try:
        started = time.monotonic()
        while registered(client) < workers:
            if process.poll() is not None:
                raise RuntimeError(f"worker --concurrency {workers} exited with {process.returncode}")
            time.sleep(0.05)
        ready = time.monotonic() - started
        time.sleep(settle)
        counter = TopLevelCounter(redis.Redis.from_url(server.url))
        before, opened = commandstats(client), time.monotonic()
        top = counter.count(window)
        after, closed = commandstats(client), time.monotonic()
        seconds = closed - opened
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        delta = {name: count for name, count in sorted(delta.items(), key=lambda kv: -kv[1]) if count}
        total = sum(delta.values())
        return {
            "workers": workers,
            "registered_s": round(ready, 2),
            "window_s": round(seconds, 1),
            "commands_per_s": round(total / seconds, 1),
            "per_worker_per_s": round(total / seconds / workers, 2),
            "top_level_per_worker_per_s": round(sum(top.values()) / seconds / workers, 2),
            "top_level_by_command_per_s": {name: round(count / seconds, 2) for name, count in top.most_common()},
            "by_command_per_s": {name: round(count / seconds, 2) for name, count in delta.items()},
        }
    finally:
        process.send_signal(signal.SIGTERM)
        stop(process, grace=60)
        client.close()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="2,20,100,200", help="comma-separated fleet sizes")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of idle measured per size")
    parser.add_argument("--settle", type=float, default=SETTLE, help="seconds between registration and window")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    parser.add_argument(
        "--source", help="run the workers from this source tree (e.g. an export of another revision), to compare"
    )
    options = parser.parse_args(argv)
    sizes = [int(part) for part in options.workers.split(",") if part]
    if not options.json:
        print(f"{'W':>5} {'registered s':>13} {'cmds/s':>8} {'per worker/s':>13} {'top-level/s':>12}  busiest")
    for size in sizes:
        row = measure(size, options.window, options.settle, options.source)
        if options.json:
            print(json.dumps(row), flush=True)
            continue
        top = ", ".join(f"{name} {rate}" for name, rate in list(row["by_command_per_s"].items())[:6])
        print(
            f"{size:>5} {row['registered_s']:>13} {row['commands_per_s']:>8} {row['per_worker_per_s']:>13} "
            f"{row['top_level_per_worker_per_s']:>12}  {top}",
            flush=True,
        )


if __name__ == "__main__":
    main()
