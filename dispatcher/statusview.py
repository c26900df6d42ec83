"""`dispatcher status` as text: one snapshot, or a live view redrawn every few seconds (`--watch`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

CLEAR = "\x1b[H\x1b[2J"
"""ANSI: cursor home, clear screen (every terminal understands it; no curses needed)."""

IN_FLIGHT_STATES = ("open", "submitting", "submitted")
"""Batch states shown under "batches in flight" while some of their tasks have no result."""

SHOWN_USER_TASKS = 2
"""User tasks named in a worker's row; beyond that the row gives their count."""
SHOWN_OFFERERS = 6
"""Workers named on a user task's line; beyond that the line gives their count."""


class RateMeter:
    """Tasks per second of each worker, from its `tasks_done` counter between two snapshots."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def update(self, snapshot: dict[str, Any]) -> dict[str, float | None]:
        now = snapshot["time"]
        rates: dict[str, float | None] = {}
        for worker in snapshot["workers"]:
            before = self._last.get(worker["name"])
            done = worker["tasks_done"]
            rates[worker["name"]] = (
                max(0.0, (done - before[1]) / (now - before[0])) if before and now > before[0] else None
            )
            self._last[worker["name"]] = (now, done)
        return rates


def render(snapshot: dict[str, Any], rates: dict[str, float | None] | None = None) -> str:
    """The status snapshot as a readable table."""
    lines: list[str] = []
    q = snapshot["queue"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot["time"]))
    lines.append(
        f"{stamp}  queue {q['name']}: {q['queued_chunks']} chunks queued, {q['running_chunks']} running, "
        f"{q['failed_chunks']} failed"
    )
    lines.extend(_route_lines(q.get("routes") or []))
    workers = snapshot["workers"]
    lines.append(f"workers: {len(workers)} live, {sum(w['slots'] for w in workers)} slots")
    if workers:
        lines.append(
            f"  {'NAME':<28} {'HOST':<18} {'STATE':<8} {'BATCH':<18} {'TASKS DONE':>11} {'TASKS/S':>9}  USER TASKS"
        )
    for w in workers:
        rate = (rates or {}).get(w["name"])
        shown_rate = "-" if rate is None else f"{rate:,.0f}"
        lines.append(
            f"  {w['name'][:28]:<28} {w['host'][:18]:<18} {w['state'][:8]:<8} "
            f"{(w['current_batch'] or '-'):<18} {w['tasks_done']:>11,} {shown_rate:>9}  "
            f"{_user_tasks(w.get('user_tasks') or [])}"
        )
    lines.extend(_offered_lines(snapshot.get("offered") or {}, len(workers)))
    batches = snapshot["batches"]
    in_flight = [b for b in batches if b["state"] in IN_FLIGHT_STATES]
    lines.append(f"batches in flight: {len(in_flight)}")
    for b in in_flight:
        lines.append("  " + _batch_line(b))
    failing = [b for b in batches if b["failed"]]
    failed_chunks = q.get("failed_chunk_ids") or []
    lines.append(
        f"failures: {sum(b['failed'] for b in failing)} failed tasks in recent batches, "
        f"{q['failed_chunks']} failed chunks"
    )
    for b in failing:
        lines.append(f"  batch {b['batch_id']}: {b['failed']} failed of {b['done']} done")
    for job_id in failed_chunks:
        lines.append(f"  chunk job {job_id} failed after all retries")
    lines.append(_last_hour_line(snapshot.get("last_hour") or {}))
    lines.append("recent batches:")
    for b in batches:
        lines.append("  " + _batch_line(b))
    return "\n".join(lines)


def _last_hour_line(events: dict[str, int]) -> str:
    """Tasks retried, worker processes lost and tasks failed for killing theirs (common.events)."""
    return (
        f"last hour: {events.get('tasks_retried', 0):,} tasks retried, {events.get('workers_lost', 0):,} "
        f"worker processes lost, {events.get('tasks_died', 0):,} tasks failed with WorkerDied"
    )


def _route_lines(routes: list[dict[str, Any]]) -> list[str]:
    """One line per user task's queue (common.routing) that holds or runs chunks, or that workers serve."""
    lines = []
    for r in routes:
        if r["task"] is None or not (r["queued_chunks"] or r["running_chunks"] or r["failed_chunks"]):
            continue
        who = f"offered by {r['offered_by']} live worker(s)" if r["offered_by"] else "no live worker offers it"
        counts = f"{r['queued_chunks']} queued, {r['running_chunks']} running, {r['failed_chunks']} failed"
        lines.append(f"  {r['queue']}: {counts} ({who})")
    return lines


def _user_tasks(names: list[str]) -> str:
    if not names:
        return "- (built-in only)"
    if len(names) <= SHOWN_USER_TASKS:
        return ", ".join(names)
    return f"{len(names)} tasks"


def _offered_lines(offered: dict[str, list[str]], workers: int) -> list[str]:
    """Who offers each user task (every live worker offers the built-in tasks)."""
    if not offered:
        return ["user tasks offered: none (every live worker offers the built-in tasks)"] if workers else []
    lines = [f"user tasks offered ({len(offered)}; every live worker offers the built-in tasks):"]
    width = min(32, max(len(name) for name in offered))
    for name, names in offered.items():
        shown = ", ".join(names[:SHOWN_OFFERERS])
        if len(names) > SHOWN_OFFERERS:
            shown += f", ... ({len(names)} in all)"
        lines.append(f"  {name:<{width}}  by {shown}")
    return lines


def _batch_line(b: dict[str, Any]) -> str:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["created"]))
    total = b["total"]
    if total:
        filled = int(20 * min(b["done"], total) / total)
        progress = f"[{'#' * filled}{'.' * (20 - filled)}] {b['done']}/{total}"
    else:
        progress = f"{b['done']}/{'?' if total is None else total}"
    line = f"{b['batch_id']}  {created}  {b['state']:<10} {progress} done, {b['failed']} failed"
    if b["state"] in ("aborted", "abandoned"):  # its input was not all submitted: say how far it got
        read = b.get("read")
        line += f"; {b.get('sent', 0)} sent of {'?' if read is None else read} input lines read"
    return line


def watch(collect: Callable[[], dict[str, Any]], out: TextIO, interval: float, count: int | None) -> None:
    """Redraw the status every `interval` seconds (`count` times, or until interrupted).

    On a terminal the screen is cleared before each frame; elsewhere frames are separated by a
    blank line, so the output can be logged.
    """
    meter = RateMeter()
    tty = out.isatty()
    frames = 0
    while count is None or frames < count:
        started = time.monotonic()
        snapshot = collect()
        text = render(snapshot, meter.update(snapshot))
        out.write((CLEAR if tty else ("\n" if frames else "")) + text + "\n")
        if tty:
            out.write(f"\n(every {interval:g} s; Ctrl-C to quit)\n")
        out.flush()
        frames += 1
        if count is not None and frames >= count:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
