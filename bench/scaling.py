"""`python -m bench.scaling`: throughput of `add` batches by worker processes and by chunk size.

Besides tasks/s (which depends on how busy the machine is) it reports the CPU time each process
spent per task, which does not: on a quiet machine, throughput is about cores / total CPU per task.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.ours import Checker, CpuMeter, _adds, _cluster, _stop
from dispatcher.batch import SubmitOptions, submit_batch


def measure(tasks: int, processes: int, chunk_size: int | None) -> dict[str, float]:
    """One batch of `tasks` add(i, i) on `processes` workers; every result checked."""
    server, workers, client, settings = _cluster(processes)
    try:
        submit_batch(client, settings, _adds(200), SubmitOptions(), Checker())  # warm-up
        cpu = CpuMeter([p.pid for p in workers.processes], server.process.pid)  # type: ignore[union-attr]
        sink = Checker()
        started = time.perf_counter()
        summary = submit_batch(client, settings, _adds(tasks), SubmitOptions(chunk_size=chunk_size), sink)
        elapsed = time.perf_counter() - started
        if sink.count != tasks or sink.bad:
            raise RuntimeError(f"{sink.count} results, {sink.bad} wrong")
        split = cpu.per_task(tasks)
        return {
            "processes": processes,
            "chunk_size": summary.chunk_size,
            "tasks_per_s": tasks / elapsed,
            "dispatcher_us_per_task": split["dispatcher_cpu_us"],
            "workers_us_per_task": split["workers_cpu_us"],
            "redis_us_per_task": split["redis_cpu_us"],
            "load_avg": os.getloadavg()[0],
        }
    finally:
        _stop(server, workers)


def main() -> None:
    """Run the worker sweep and the chunk-size sweep; print a table and write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--chunk-sizes", default="1,10,100,1000")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "scaling.json")
    args = parser.parse_args()
    rows = [measure(args.tasks, int(n), None) for n in args.workers.split(",")]
    for size in (int(c) for c in args.chunk_sizes.split(",")):
        rows.append(measure(args.tasks if size >= 100 else args.tasks // 10, 2, size))
    print(
        "| worker processes | chunk size | tasks/s | dispatcher CPU us/task | workers CPU us/task | Redis CPU us/task |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        cpu = " | ".join(f"{r[k]:.1f}" for k in ("dispatcher_us_per_task", "workers_us_per_task", "redis_us_per_task"))
        print(f"| {r['processes']:.0f} | {r['chunk_size']:.0f} | {r['tasks_per_s']:,.0f} | {cpu} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
