"""RQ's own per-job path against the worker's fast path, on each RQ major, in one run.

    python -m bench.rqpaths [--python .venv/bin/python --python .venv-rq2/bin/python] [--round-trips N] [--jobs N]

For each interpreter (one virtual environment per RQ version) and each path (DW_RQ_FAST_PATH=0: RQ's
own; 1: ours) it starts a fresh redis-server and one `worker`, then measures:
- W2: the round trip of one task (Session.call, chunk size 1), p50 and p99;
- worker CPU per chunk job: the worker process's CPU over a batch of chunk-size-1 jobs, per job.
It prints a table, the speed-up of the fast path on each RQ, and whether it clears the 2x bar that
keeps a fast path (docs/architecture.md, "RQ versions and the fast path").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEEP_AT = 2.0
"""A fast path is kept where it buys at least this factor (W2 p50 or worker CPU per job)."""


def measure(round_trips: int, jobs: int) -> dict[str, float]:
    """In this interpreter, with the path DW_RQ_FAST_PATH selects: W2 p50/p99 (ms), worker CPU per job (us)."""
    from bench.ours import _cluster, _stop
    from bench.procs import cpu_seconds
    from bench.spec import percentile
    from common.wire import TaskSpec
    from dispatcher.batch import SubmitOptions, submit_batch

    server, workers, client, settings = _cluster(1)
    try:
        from dispatcher.session import Session

        latencies = []
        with Session(client, settings) as session:
            for i in range(50):  # warm-up
                session.call("add", i, i)
            for i in range(round_trips):
                started = time.perf_counter()
                result = session.call("add", i, i)
                latencies.append(time.perf_counter() - started)
                if not result.ok or result.value != 2 * i:
                    raise RuntimeError(f"W2: wrong result {result}")
        pids = [p.pid for p in workers.processes]
        done = [0]

        def sink(result: object) -> None:
            done[0] += 1

        before = cpu_seconds(pids)
        items = (TaskSpec(i, "add", [i, i]) for i in range(jobs))
        submit_batch(client, settings, items, SubmitOptions(chunk_size=1), sink)
        cpu = cpu_seconds(pids) - before
        if done[0] != jobs:
            raise RuntimeError(f"CPU run: {done[0]} of {jobs} results")
        return {
            "p50_ms": percentile(latencies, 50) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3,
            "cpu_us_per_job": cpu / jobs * 1e6,
        }
    finally:
        _stop(server, workers)


def _child(python: str, fast: bool, round_trips: int, jobs: int) -> dict[str, object]:
    env = {**os.environ, "DW_RQ_FAST_PATH": "1" if fast else "0"}
    code = (
        "import json, rq; from bench.rqpaths import measure; "
        f"print(json.dumps({{'rq': rq.__version__, **measure({round_trips}, {jobs})}}))"
    )
    done = subprocess.run([python, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{python}: {done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rqpaths", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = [sys.executable] + [str(p) for p in [ROOT / ".venv-rq2" / "bin" / "python"] if p.exists()]
    parser.add_argument("--python", action="append", help="an interpreter with another RQ (repeatable)")
    parser.add_argument("--round-trips", type=int, default=1000, help="W2 round trips per path (default 1000)")
    parser.add_argument("--jobs", type=int, default=2000, help="chunk jobs for worker CPU per job (default 2000)")
    args = parser.parse_args(argv)
    rows = []
    for python in args.python or default:
        for fast in (False, True):
            result = _child(python, fast, args.round_trips, args.jobs)
            rows.append({"path": "fast path" if fast else "RQ's own", **result})
            print(f"  measured RQ {result['rq']} {rows[-1]['path']}", file=sys.stderr)
    print("| RQ | path | W2 p50 ms | W2 p99 ms | worker CPU per chunk job, us |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['rq']} | {row['path']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us_per_job']:.0f} |"
        )
    for own, fast in zip(rows[::2], rows[1::2], strict=True):
        latency = float(own["p50_ms"]) / float(fast["p50_ms"])  # type: ignore[arg-type]
        cpu = float(own["cpu_us_per_job"]) / float(fast["cpu_us_per_job"])  # type: ignore[arg-type]
        verdict = "keep" if max(latency, cpu) >= KEEP_AT else "delete"
        print(f"RQ {own['rq']}: fast path W2 p50 {latency:.1f}x, worker CPU per job {cpu:.1f}x -> {verdict}")


if __name__ == "__main__":
    main()
