"""RedisExecutor.map against ProcessPoolExecutor.map, 2 workers each, on the same machine in one run.

    python bench/executor_vs_pool.py [--n 100000] [--workers 2]

Both sides compute map(add, range(n), range(n)); printed as tasks/s and as a ratio.
"""

from __future__ import annotations

import argparse
import operator
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from common.builtin_tasks import add
from common.connection import connect
from common.settings import Settings
from dispatcher import RedisExecutor
from dispatcher.local import EmbeddedRedis, LocalWorkers, wait_for_workers


def timed(label: str, n: int, run: object) -> float:
    started = time.perf_counter()
    results = run()  # type: ignore[operator]
    took = time.perf_counter() - started
    assert results == [2 * i for i in range(n)], f"{label}: wrong results"
    print(f"{label:<44} {took:7.2f} s  {n / took:>10,.0f} tasks/s")
    return n / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, workers = args.n, args.workers
    print(f"map(add, range({n:,}), range({n:,})) with {workers} worker processes")

    with EmbeddedRedis() as server, LocalWorkers(server.url, workers):
        wait_for_workers(connect(Settings.from_env(redis_url=server.url)), workers)
        time.sleep(0.3)  # let workers advertise their tasks
        with RedisExecutor(server.url) as executor:
            redis_rate = timed(
                f"RedisExecutor({workers} workers).map", n, lambda: list(executor.map(add, range(n), range(n)))
            )
        with RedisExecutor(server.url) as executor:
            executor.submit(add, 0, 0).result()
            trips = []
            for i in range(200):
                started = time.perf_counter()
                executor.submit(add, i, i).result()
                trips.append(time.perf_counter() - started)
            print(f"{'RedisExecutor submit().result() round trip':<44} median {statistics.median(trips) * 1000:.2f} ms")
        with RedisExecutor(server.url, chunksize=100) as executor:
            timed("RedisExecutor.map, chunksize=100", n, lambda: list(executor.map(add, range(n), range(n))))

    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(operator.add, range(10), range(10)))  # start the processes outside the timing
        pool_rate = timed(
            f"ProcessPoolExecutor({workers}).map", n, lambda: list(pool.map(operator.add, range(n), range(n)))
        )
        pool_chunked = timed(
            f"ProcessPoolExecutor({workers}).map, chunksize=1000",
            n,
            lambda: list(pool.map(operator.add, range(n), range(n), chunksize=1000)),
        )
    print(f"RedisExecutor / ProcessPoolExecutor (default chunksize=1): x{redis_rate / pool_rate:.2f}")
    print(f"RedisExecutor / ProcessPoolExecutor (chunksize=1000):      x{redis_rate / pool_chunked:.2f}")


if __name__ == "__main__":
    main()
