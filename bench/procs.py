"""Process helpers for the benchmark: resident memory of a process tree, sampled to its peak."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by the given processes and all their descendants, every thread counted
    (nanosecond scheduler accounting from /proc/<pid>/task/<tid>/schedstat; 0 where unavailable)."""
    total = 0
    for process in {p for pid in pids for p in descendants(pid)}:
        try:
            threads = os.listdir(f"/proc/{process}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                total += int(Path(f"/proc/{process}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def tree_rss_mib(pids: list[int]) -> float:
    """Summed resident memory (VmRSS) of the given processes and all their descendants, in MiB."""
    every = {p for pid in pids for p in descendants(pid)}
    return sum(_status_kib(p, "VmRSS") for p in every) / 1024


class PeakRSS:
    """Samples tree_rss_mib(pids) every 50 ms in a thread; `.peak` is the largest sample."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss_mib(self.pids))
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_mib(self.pids))
