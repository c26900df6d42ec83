"""W4's dispatcher process: submit a task file through the dispatcher's functions, check every result,
print throughput and this process's peak RSS as one JSON line."""

from __future__ import annotations

import json
import resource
import sys
import time

from common.connection import connect
from common.settings import Settings
from common.wire import TaskResult
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.reader import read_tasks


def main(url: str, path: str) -> None:
    """Run the file as one batch; exit 1 if any result is missing or wrong."""
    settings = Settings.from_env(redis_url=url)
    client = connect(settings)
    count = bad = 0

    def sink(result: TaskResult) -> None:
        nonlocal count, bad
        count += 1
        if not result.ok or result.value != 2 * result.args[0]:
            bad += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    with open(path, encoding="utf-8") as source:
        summary = submit_batch(
            client, settings, read_tasks(source, "text", settings.max_arg_bytes), SubmitOptions(source=path), sink
        )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "tasks_per_s": count / elapsed,
                "seconds": elapsed,
                "tasks": count,
                "wrong": bad,
                "chunk_size": summary.chunk_size,
                "dispatcher_rss_mib": rss_mib,
                "dispatcher_cpu_us": cpu / max(count, 1) * 1e6,
            }
        )
    )
    if bad or count != summary.total:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
