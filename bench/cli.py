"""The command-line workloads: what users run, process start included, every result checked.

C1  `dispatcher submit FILE --json > out` on a file of `add i i` lines (ppe: bench/ppe_script.py);
C2  the same with the default human output;
C3  start time of `dispatcher --help`, and of `worker` until it is registered in Redis;
C4  the dispatcher's CPU per task split into reading, enqueueing, result decoding, formatting and
    writing (one C1 run sampled by py-spy);
C5  the feed ceiling: one dispatcher's CPU per task with the workers' taken out, and two dispatchers
    on the same queue at once (their CPU and Redis's per task).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.ours import _cluster, _stop
from bench.procs import PeakRSS, cpu_seconds
from bench.spec import Sizes
from common import keys

ROOT = Path(__file__).resolve().parent.parent
Runs = list[dict[str, float]]


def task_file(workdir: Path, count: int) -> Path:
    """A file of `count` lines `add i i`."""
    path = workdir / f"cli-{count}.txt"
    if not path.exists():
        with path.open("w") as out:
            out.writelines(f"add {i} {i}\n" for i in range(count))
    return path


def _command(name: str) -> list[str]:
    """The installed console script (what users run), else `python -m`."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run_timed(argv: list[str], stdout: Path, stderr: Path | None = None) -> dict[str, float]:
    """Run argv with stdout to a file; its wall time from spawn to exit, CPU seconds and peak RSS.

    The peak is sampled from /proc: the ru_maxrss that wait4 reports starts from this process's own
    RSS when it spawned the child (Linux carries it over the exec), which says nothing of the child."""
    with stdout.open("wb") as out, (stderr or Path(os.devnull)).open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=_env(), cwd=ROOT)
        with PeakRSS([process.pid]) as rss:
            _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        detail = stderr.read_text()[-2000:] if stderr is not None else ""
        raise RuntimeError(f"{argv[:3]} exited {process.returncode}: {detail}")
    return {"seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": rss.peak}


def check_json(path: Path, count: int) -> None:
    """Every task has exactly one ok JSON line, with result 2 i."""
    seen = bytearray(count)
    with path.open("rb") as lines:
        for line in lines:
            record = json.loads(line)
            index = record["index"]
            if not record["ok"] or record["result"] != 2 * record["args"][0] or record["args"][0] != index:
                raise RuntimeError(f"wrong result line: {line[:200]!r}")
            if seen[index]:
                raise RuntimeError(f"task {index} twice")
            seen[index] = 1
    if sum(seen) != count:
        raise RuntimeError(f"{count - sum(seen)} results missing")


_HUMAN = re.compile(rb"Task (\d+): add (\d+) \2 = (\d+) \(by [^,]+, [0-9.]+ ms\)\n")


def check_human(path: Path, count: int) -> None:
    """Every task has exactly one human line `Task N: add i i = 2i (by ..., ... ms)`."""
    seen = bytearray(count)
    with path.open("rb") as lines:
        for line in lines:
            match = _HUMAN.fullmatch(line)
            if match is None or int(match[3]) != 2 * int(match[2]) or int(match[1]) != int(match[2]) + 1:
                raise RuntimeError(f"wrong result line: {line[:200]!r}")
            index = int(match[2])
            if seen[index]:
                raise RuntimeError(f"task {index} twice")
            seen[index] = 1
    if sum(seen) != count:
        raise RuntimeError(f"{count - sum(seen)} results missing")


def _cli_run(url: str, path: Path, as_json: bool, workdir: Path, count: int) -> dict[str, float]:
    out, err = workdir / "cli-out.txt", workdir / "cli-err.txt"
    argv = [*_command("dispatcher"), "submit", str(path), "--redis-url", url, "--no-progress"]
    stats = run_timed([*argv, "--json"] if as_json else argv, out, err)
    (check_json if as_json else check_human)(out, count)
    out.unlink()
    return stats


def cli(sizes: Sizes, reps: int, workdir: Path, as_json: bool) -> Runs:
    """C1 (as_json) / C2: the task file through `dispatcher submit`, a fresh Redis and 2 workers per run."""
    count = sizes.cli
    path = task_file(workdir, count)
    runs = []
    for _ in range(reps):
        server, workers, _client, _settings = _cluster(2)
        try:
            assert server.process is not None
            pids, redis_pid = [p.pid for p in workers.processes], server.process.pid
            before = cpu_seconds(pids), cpu_seconds([redis_pid])
            stats = _cli_run(server.url, path, as_json, workdir, count)
            runs.append(
                {
                    "tasks_per_s": count / stats["seconds"],
                    "seconds": stats["seconds"],
                    "dispatcher_cpu_us": stats["cpu"] / count * 1e6,
                    "dispatcher_rss_mib": stats["rss_mib"],
                    "workers_cpu_us": (cpu_seconds(pids) - before[0]) / count * 1e6,
                    "redis_cpu_us": (cpu_seconds([redis_pid]) - before[1]) / count * 1e6,
                    "feed_ceiling": count / stats["cpu"],
                }
            )
        finally:
            _stop(server, workers)
    return runs


def ppe(sizes: Sizes, reps: int, workdir: Path) -> Runs:
    """C1's peer: bench/ppe_script.py on the same file, process start included, every result checked."""
    count = sizes.cli
    path = task_file(workdir, count)
    runs = []
    for _ in range(reps):
        out = workdir / "ppe-out.txt"
        stats = run_timed([sys.executable, "-m", "bench.ppe_script", str(path)], out, workdir / "ppe-err.txt")
        check_json(out, count)
        out.unlink()
        runs.append(
            {
                "tasks_per_s": count / stats["seconds"],
                "seconds": stats["seconds"],
                "dispatcher_rss_mib": stats["rss_mib"],
            }
        )
    return runs


def startup(reps: int, workdir: Path) -> Runs:
    """C3: `dispatcher --help` wall time; `worker` from spawn until Redis lists it as a worker."""
    runs = []
    server, workers, client, _settings = _cluster(1)
    try:
        for rep in range(max(reps, 5)):
            help_run = run_timed([*_command("dispatcher"), "--help"], workdir / "help.txt")
            name = f"bench-ready-{rep}"
            started = time.perf_counter()
            process = subprocess.Popen(
                [*_command("worker"), "--redis-url", server.url, "--name", name, "--quiet"],
                env=_env(),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            try:
                while not client.sismember(keys.RQ_WORKERS, keys.rq_worker_key(name)):
                    if process.poll() is not None:
                        raise RuntimeError(f"worker exited {process.returncode} before it was ready")
                    if time.perf_counter() - started > 30:
                        raise RuntimeError("worker not registered within 30 s")
                    time.sleep(0.002)
                ready = time.perf_counter() - started
            finally:
                process.terminate()
                process.wait()
            runs.append({"help_ms": help_run["seconds"] * 1e3, "worker_ready_ms": ready * 1e3})
    finally:
        _stop(server, workers)
    return runs


_RATE = 250
"""py-spy samples per second."""

PHASES = ("reading", "enqueueing", "decoding", "formatting", "writing", "start-up and other")

# (file suffix, function or "" for any): the first frame from the innermost outwards that matches decides.
_RULES: list[tuple[str, str, str]] = [
    ("dispatcher/output.py", "write_many", "writing"),
    ("dispatcher/output.py", "", "formatting"),
    ("common/wire.py", "to_record", "formatting"),
    ("common/wire.py", "decode_results", "decoding"),
    ("common/wire.py", "_decode_rows", "decoding"),
    ("dispatcher/watch.py", "", "decoding"),
    ("dispatcher/reader.py", "", "reading"),
    ("dispatcher/lines.py", "", "reading"),
    ("dispatcher/linejson.py", "", "reading"),
    ("dispatcher/offered.py", "__call__", "reading"),
    ("dispatcher/chunking.py", "peek_ahead", "reading"),
    ("dispatcher/submit.py", "", "enqueueing"),
    ("dispatcher/enqueue.py", "", "enqueueing"),
    ("common/wire.py", "encode_chunk", "enqueueing"),
    ("common/jobdata.py", "", "enqueueing"),
    ("dispatcher/batch.py", "_submit_all", "reading"),
]
_CLI = "dispatcher/cli"
"""The dispatcher's command modules (cli.py, cli_*.py): a sample under them is the command's work."""
_FRAME = re.compile(r"(?P<function>[^ ]+) \((?P<file>[^:]+):\d+\)")


def _phase(stack: str) -> str:
    frames = stack.split(";")
    if not any(_CLI in f for f in frames):
        return "start-up and other"
    for frame in reversed(frames):
        match = _FRAME.match(frame.strip())
        if match is None:
            continue
        function, file = match["function"].rsplit(".", 1)[-1], match["file"]
        for suffix, wanted, phase in _RULES:
            if file.endswith(suffix) and (not wanted or function == wanted):
                return phase
    return "start-up and other"


def cpu_split(sizes: Sizes, workdir: Path) -> Runs:
    """C4: one C1 run sampled by py-spy; each phase's share of the samples times the CPU per task of
    one C1 run without it."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise RuntimeError("py-spy not installed (pip install -e '.[bench]')")
    count = sizes.cli
    path = task_file(workdir, count)
    server, workers, _client, _settings = _cluster(2)
    try:
        raw = workdir / "profile.txt"
        out = workdir / "cli-out.txt"
        argv = [*_command("dispatcher"), "submit", str(path), "--json", "--redis-url", server.url, "--no-progress"]
        run_timed(
            [spy, "record", "--nonblocking", "-r", str(_RATE), "-f", "raw", "-o", str(raw), "--", *argv],
            out,
            workdir / "spy-err.txt",
        )
        lines = out.read_bytes().splitlines(keepends=True)
        out.write_bytes(b"".join(line for line in lines if line.startswith(b"{")))  # not py-spy's own notes
        check_json(out, count)
    finally:
        _stop(server, workers)
    samples: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if "threading.py" in stack and _CLI not in stack:
            continue  # the lease thread, blocked
        samples[_phase(stack)] += int(number)
    # py-spy slows what it samples: its samples give each phase's share, and a run without it the CPU.
    cpu_us = cli(sizes, 1, workdir, as_json=True)[0]["dispatcher_cpu_us"]
    total = sum(samples.values()) or 1
    split = {f"{phase}_us": samples[phase] / total * cpu_us for phase in PHASES}
    return [{"dispatcher_cpu_us": cpu_us, **split}]


def feed(sizes: Sizes, reps: int, workdir: Path) -> Runs:
    """C5: two dispatchers at once on one queue, each half the C1 file (JSON output): their CPU per
    task, Redis's, and the ceiling that gives (dispatchers on machines of their own: Redis decides)."""
    count = sizes.cli // 2
    path = task_file(workdir, count)
    runs = []
    for _ in range(reps):
        server, workers, _client, _settings = _cluster(2)
        try:
            assert server.process is not None
            redis_before = cpu_seconds([server.process.pid])
            argv = [*_command("dispatcher"), "submit", str(path), "--json", "--redis-url", server.url, "--no-progress"]
            started = time.perf_counter()
            outs = [workdir / f"feed-{i}.txt" for i in range(2)]
            files = [o.open("wb") for o in outs]
            procs = [subprocess.Popen(argv, stdout=f, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT) for f in files]
            usages = [os.wait4(p.pid, 0)[2] for p in procs]
            elapsed = time.perf_counter() - started
            for f in files:
                f.close()
            for out in outs:
                check_json(out, count)
                out.unlink()
            redis_us = (cpu_seconds([server.process.pid]) - redis_before) / (2 * count) * 1e6
            dispatcher_us = sum(u.ru_utime + u.ru_stime for u in usages) / (2 * count) * 1e6
            runs.append(
                {
                    "tasks_per_s": 2 * count / elapsed,
                    "dispatcher_cpu_us": dispatcher_us,
                    "redis_cpu_us": redis_us,
                    "one_ceiling": 1e6 / dispatcher_us,
                    "two_ceiling": min(2e6 / dispatcher_us, 1e6 / redis_us),
                }
            )
        finally:
            _stop(server, workers)
    return runs
