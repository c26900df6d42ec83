"""Count the primes below N, split into ranges across workers: one process, the executor, the CLI.

    python examples/primes/count_primes.py --local 2              # embedded Redis + 2 local workers
    python examples/primes/count_primes.py --redis-url redis://host:6379/0   # your own workers

Your own workers must serve this module: `PYTHONPATH=examples/primes worker --tasks primes_tasks`.
Prints each way's time and its speed-up over one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from primes_tasks import count_primes  # noqa: E402  (needs HERE on the path)

from dispatcher import RedisExecutor  # noqa: E402


def ranges(limit: int, pieces: int) -> list[tuple[int, int]]:
    """[0, limit) cut into `pieces` contiguous ranges."""
    step = -(-limit // pieces)
    return [(start, min(start + step, limit)) for start in range(0, limit, step)]


def one_process(parts: list[tuple[int, int]]) -> int:
    return sum(count_primes(start, stop) for start, stop in parts)


def with_executor(redis_url: str, parts: list[tuple[int, int]]) -> int:
    with RedisExecutor(redis_url, chunksize=1) as executor:
        return sum(executor.map(count_primes, [a for a, _ in parts], [b for _, b in parts]))


def with_cli(redis_url: str, parts: list[tuple[int, int]]) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as batch:
        for start, stop in parts:
            batch.write(json.dumps({"task": "primes.count", "args": [start, stop]}) + "\n")
    try:
        done = subprocess.run([sys.executable, "-m", "dispatcher", "submit", batch.name, "--json", "--chunk-size", "1"],
                              env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True,
                              check=True)  # fmt: skip
    finally:
        os.unlink(batch.name)
    return sum(json.loads(line)["result"] for line in done.stdout.splitlines())


@contextlib.contextmanager
def local_cluster(workers: int) -> Iterator[str]:
    """An embedded redis-server and `workers` local worker processes serving primes_tasks."""
    from common.connection import connect
    from common.settings import Settings
    from dispatcher.local import EmbeddedRedis, LocalWorkers, wait_for_workers

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    with EmbeddedRedis() as server, LocalWorkers(server.url, workers, ["--tasks", "primes_tasks"]):
        wait_for_workers(connect(Settings.from_env(redis_url=server.url)), workers)
        time.sleep(0.2)  # workers advertise their tasks just after registering
        yield server.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=400_000_000, help="count primes below this (default 4e8)")
    parser.add_argument("--pieces", type=int, default=40, help="ranges (tasks) to split into (default 40)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", type=int, metavar="N", help="start an embedded Redis and N local workers")
    where.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="Redis your workers use")
    args = parser.parse_args()
    parts = ranges(args.limit, args.pieces)
    print(f"counting primes below {args.limit:,} in {len(parts)} ranges")

    started = time.perf_counter()
    expected = one_process(parts)
    alone = time.perf_counter() - started
    print(f"one process      : {expected:,} primes in {alone:6.2f} s")

    with local_cluster(args.local) if args.local else contextlib.nullcontext(args.redis_url) as url:
        for label, run in (("RedisExecutor.map", with_executor), ("dispatcher submit", with_cli)):
            started = time.perf_counter()
            found = run(url, parts)
            took = time.perf_counter() - started
            check = "" if found == expected else f"  MISMATCH (expected {expected:,})"
            print(f"{label:<17}: {found:,} primes in {took:6.2f} s, speed-up x{alone / took:.2f}{check}")
            if check:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
