"""`python -m bench`: run W1-W4 against this system and its peers in one run; print one table, write JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cli, ours
from bench.spec import QUICK, Sizes, median_of

SYSTEMS = ("ours", "rq", "huey", "ppe")
WORKLOADS = ("W1", "W2", "W3", "W3b", "W4", "C1", "C2", "C3", "C4", "C5")
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"

# (workload, metric, label, higher is better)
METRICS = [
    ("W1", "tasks_per_s", "W1 throughput, tasks/s", True),
    ("W1", "dispatcher_cpu_us", "W1 CPU per task, us: dispatcher", False),
    ("W1", "workers_cpu_us", "W1 CPU per task, us: workers (together)", False),
    ("W1", "redis_cpu_us", "W1 CPU per task, us: Redis", False),
    ("W2", "p50_ms", "W2 round trip p50, ms", False),
    ("W2", "p99_ms", "W2 round trip p99, ms", False),
    ("W3", "efficiency", "W3 200 x sleep(0.05), 20 slots (ours: {w3_mode}): efficiency", True),
    ("W3b", "efficiency", "W3b 2,000 x sleep(0.05), 200 slots (ours: {w3_mode}): efficiency", True),
    ("W3b", "rss_mib", "W3b worker processes' RSS, MiB", False),
    ("W4", "tasks_per_s", "W4 1M-task file, tasks/s", True),
    ("W4", "dispatcher_rss_mib", "W4 dispatcher peak RSS, MiB", False),
    ("W4", "dispatcher_cpu_us", "W4 CPU per task, us: dispatcher", False),
    ("W4", "workers_cpu_us", "W4 CPU per task, us: workers (together)", False),
    ("W4", "redis_cpu_us", "W4 CPU per task, us: Redis", False),
    ("W4", "redis_peak_mib", "W4 Redis used_memory_peak, MiB", False),
    ("C1", "tasks_per_s", "C1 task file, `submit --json > file`, tasks/s (start included)", True),
    ("C1", "dispatcher_cpu_us", "C1 CPU per task, us: dispatcher (everything)", False),
    ("C1", "workers_cpu_us", "C1 CPU per task, us: workers (together)", False),
    ("C1", "redis_cpu_us", "C1 CPU per task, us: Redis", False),
    ("C1", "dispatcher_rss_mib", "C1 dispatcher peak RSS (ppe: with its pool), MiB", False),
    ("C2", "tasks_per_s", "C2 task file, `submit > file` (human), tasks/s", True),
    ("C2", "dispatcher_cpu_us", "C2 CPU per task, us: dispatcher", False),
    ("C3", "help_ms", "C3 `dispatcher --help`, ms", False),
    ("C3", "worker_ready_ms", "C3 `worker` start until registered, ms", False),
    *((("C4", f"{phase}_us", f"C4 dispatcher CPU per task, us: {phase}", False)) for phase in cli.PHASES),
    ("C5", "one_ceiling", "C5 feed ceiling, one dispatcher (1 / its CPU per task), tasks/s", True),
    ("C5", "dispatcher_cpu_us", "C5 two dispatchers at once: CPU per task, us, each", False),
    ("C5", "redis_cpu_us", "C5 two dispatchers at once: Redis CPU per task, us", False),
    ("C5", "two_ceiling", "C5 feed ceiling, two dispatchers (min of 2 / theirs, 1 / Redis's), tasks/s", True),
]


def plan(
    sizes: Sizes, reps: int, workdir: Path, w3_mode: str = "async"
) -> dict[tuple[str, str], Callable[[], list[dict[str, float]]]]:
    """Every (system, workload) pair the harness knows how to run."""
    jobs: dict[tuple[str, str], Callable[[], list[dict[str, float]]]] = {
        ("ours", "W1"): lambda: ours.w1(sizes, reps),
        ("ours", "W2"): lambda: ours.w2(sizes, reps),
        ("ours", "W3"): lambda: ours.w3(sizes.w3_tasks, sizes.w3_slots, reps, mode=w3_mode),
        ("ours", "W3b"): lambda: ours.w3(sizes.w3b_tasks, sizes.w3b_slots, reps, mode=w3_mode),
        ("ours", "W4"): lambda: ours.w4(sizes, reps, workdir),
        ("ours", "C1"): lambda: cli.cli(sizes, reps, workdir, as_json=True),
        ("ours", "C2"): lambda: cli.cli(sizes, reps, workdir, as_json=False),
        ("ours", "C3"): lambda: cli.startup(reps, workdir),
        ("ours", "C4"): lambda: cli.cpu_split(sizes, workdir),
        ("ours", "C5"): lambda: cli.feed(sizes, reps, workdir),
        ("ppe", "C1"): lambda: cli.ppe(sizes, reps, workdir),
    }
    try:
        from bench import peers
    except ImportError as exc:  # the bench extra is not installed
        print(f"peers skipped ({exc}); install them with: pip install -e '.[bench]'", file=sys.stderr)
        return jobs
    peer_jobs = {
        ("rq", "W1"): lambda: peers.rq_w1(sizes, reps),
        ("rq", "W2"): lambda: peers.rq_w2(sizes, reps),
        ("rq", "W3"): lambda: peers.rq_w3(sizes.w3_tasks, sizes.w3_slots, reps),
        ("huey", "W1"): lambda: peers.huey_w1(sizes, reps),
        ("huey", "W2"): lambda: peers.huey_w2(sizes, reps),
        ("huey", "W3"): lambda: peers.huey_w3(sizes.w3_tasks, sizes.w3_slots, reps),
        ("huey", "W3b"): lambda: peers.huey_w3(sizes.w3b_tasks, sizes.w3b_slots, reps),
        ("ppe", "W1"): lambda: peers.ppe_w1(sizes, reps),
        ("ppe", "W2"): lambda: peers.ppe_w2(sizes, reps),
        ("ppe", "W3"): lambda: peers.ppe_w3(sizes.w3_tasks, sizes.w3_slots, reps),
        ("ppe", "W4"): lambda: peers.ppe_w4(sizes, reps, workdir),
    }
    if importlib.util.find_spec("huey") is None:
        print("huey skipped: not installed (pip install -e '.[bench]')", file=sys.stderr)
        peer_jobs = {key: job for key, job in peer_jobs.items() if key[0] != "huey"}
    jobs.update(peer_jobs)
    return jobs


NOT_RUN = {
    ("rq", "W3b"): "200 RQ processes (one job at a time each) would need ~8 GB",
    ("rq", "W4"): "1M jobs at RQ's W1 rate would take ~20 min",
    ("huey", "W4"): "1M tasks at huey's W1 rate would take minutes",
    ("ppe", "W3b"): "200 processes; not a peer for this row",
}


def main(argv: list[str] | None = None) -> None:
    """Parse options, run the selected workloads, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1 repetition, shorter RQ runs, W4 at 200k tasks, C1-C5 at 100k lines"
    )
    parser.add_argument("--reps", type=int, help="repetitions per workload (default 3; 1 with --quick)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--w4-tasks", type=int, help="W4 batch size (default 1,000,000)")
    parser.add_argument("--cli-tasks", type=int, help="C1-C5 file size in lines (default 1,000,000)")
    parser.add_argument(
        "--w3-mode",
        choices=sorted(ours.W3_MODES),
        default="async",
        help="our W3/W3b slots: async (worker --async-slots N, the default) or threads (--threads N)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results [{DEFAULT_JSON}]")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes()
    if args.w4_tasks:
        sizes = Sizes(**{**sizes.__dict__, "w4": args.w4_tasks})
    if args.cli_tasks:
        sizes = Sizes(**{**sizes.__dict__, "cli": args.cli_tasks})
    reps = args.reps or (1 if args.quick else 3)
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]

    results: dict[str, dict[str, Any]] = {s: {} for s in systems}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        jobs = plan(sizes, reps, Path(tmp), args.w3_mode)
        for workload in workloads:
            for system in systems:
                job = jobs.get((system, workload))
                if job is None:
                    results[system][workload] = {"skipped": NOT_RUN.get((system, workload), "not available")}
                    continue
                print(f"running {workload} on {system} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                try:
                    runs = job()
                    results[system][workload] = {"median": median_of(runs), "runs": runs}
                except Exception as exc:
                    traceback.print_exc()
                    results[system][workload] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    print(render(results, systems, workloads, sizes, reps, args.w3_mode))
    document = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "reps": reps,
        "sizes": sizes.__dict__,
        "w3_mode": args.w3_mode,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nJSON: {args.json}", file=sys.stderr)
    failed = [f"{s} {w}" for s, by_workload in results.items() for w, entry in by_workload.items() if "error" in entry]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


def render(
    results: dict[str, dict[str, Any]],
    systems: list[str],
    workloads: list[str],
    sizes: Sizes,
    reps: int,
    w3_mode: str = "async",
) -> str:
    """One Markdown table: medians per system and our ratio to each peer (>1 means ours is better)."""
    peers = [s for s in systems if s != "ours"]
    header = ["metric", *systems, *(f"ours vs {p}" for p in peers)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload, metric, label, higher in METRICS:
        if workload not in workloads:
            continue
        cells = [label.format(w3_mode=ours.W3_LABELS[w3_mode])]
        values: dict[str, float | None] = {}
        for system in systems:
            entry = results.get(system, {}).get(workload, {})
            value = entry.get("median", {}).get(metric)
            values[system] = value
            cells.append(_fmt(value) if value is not None else ("error" if "error" in entry else "n/a"))
        ours_value = values.get("ours")
        for peer in peers:
            other = values.get(peer)
            if ours_value and other:
                cells.append(f"{(ours_value / other if higher else other / ours_value):.2f}x")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nmedians of {reps} run(s); W1 RQ ran {sizes.w1_rq:,} tasks, W2 {sizes.w2} round trips, "
        f"W4 {sizes.w4:,} tasks, C1-C5 {sizes.cli:,} lines; ratio > 1 means ours is better."
    )
    return "\n".join(lines) + note


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg": os.getloadavg(),
    }
