"""What a careful re-run (worker/careful.py) costs against the ordinary run of the same chunk, in one process.

    python -m bench.careful_cost [--tasks 1000] [--repeat 5]

Both run a chunk of `add` tasks against a private redis-server and publish every result; the
careful run also writes its marker before each task (one round trip each, on a serial worker).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import Settings, default_catalogue, keys
from common.connection import connect
from common.crash import CRASHED_META
from common.wire import ChunkPayload
from dispatcher.local import EmbeddedRedis
from worker.careful import run_careful
from worker.execute import Watchdog
from worker.publish import ResultPublisher
from worker.runtime import Runtime
from worker.serial import run_serial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server = EmbeddedRedis().start()
    try:
        settings = Settings.from_env({}, redis_url=server.url)
        client = connect(settings)
        runtime = Runtime(settings, default_catalogue, "bench")
        chunk = ChunkPayload("bench", 0, 600, [[i, None, "add", [i, 1], {}] for i in range(args.tasks)])
        ordinary, careful = [], []
        for _ in range(args.repeat):
            client.flushall()
            started = time.perf_counter()
            publisher = ResultPublisher(client, "bench", 0, 600, "bench")
            with Watchdog(settings.task_timeout) as watchdog:
                run_serial(chunk.rows, default_catalogue, settings, "bench", watchdog, publisher)
            publisher.finish()
            ordinary.append(time.perf_counter() - started)
            client.flushall()
            started = time.perf_counter()
            publisher = ResultPublisher(client, "bench", 0, 600, "bench")
            run_careful(keys.chunk_job_id("bench", 0), chunk, runtime, publisher, client)
            publisher.finish()
            careful.append(time.perf_counter() - started)
        o, c = statistics.median(ordinary), statistics.median(careful)
        print(f"{args.tasks} add tasks, median of {args.repeat} ({CRASHED_META} chunks run careful):")
        print(f"  ordinary run {o * 1000:8.1f} ms  ({o / args.tasks * 1e6:6.1f} us/task)")
        print(f"  careful run  {c * 1000:8.1f} ms  ({c / args.tasks * 1e6:6.1f} us/task), {c / o:.0f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
