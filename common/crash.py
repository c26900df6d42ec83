"""Crash isolation: which task each death of a worker process blames, and when a task fails alone for it.

A chunk whose worker process died is recovered by whoever sweeps RQ's started registry (a worker or
a dispatcher: both load jobs as common.jobs.InertJob, which calls `note_abandoned`). The chunk then
runs again in careful mode (worker.careful): before each small wave of its tasks, the worker marks
the wave's indices as running in the chunk's crash record, in the round trip that publishes the
previous wave's results. A death during a wave of one task blames that task; a death during a wave
of several makes them all suspects, and suspects run one at a time from then on.

An ordinary run writes no marker to Redis, so that no task pays a round trip for it: it records its
running tasks in memory shared with its supervisor (worker.running), and the supervisor, seeing the
process die, writes them as the marker (`note_running`) before it hands the chunk back. So the first
death of a supervised process already blames its task (or names its suspects); a process that died
with its supervisor (a whole process group killed) leaves no marker, and its first death blames nobody.

Crash record (keys.crash_key(job id)), a hash:
  running      the marker {"tasks": [indices], "worker", "host", "pid"} while a careful wave runs
  deaths       how many times the chunk was recovered after its worker died
  blame:<i>    JSON [[worker, cause or null], ...]: the deaths while task i ran alone
  suspects     JSON [indices] of tasks that ran in a wave at a death
It is deleted once a careful run has published every result of its chunk.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, field
from typing import Any

from common import keys
from common.events import WORKERS_LOST, count_event
from common.wire import TaskResult, TaskSpec

CRASHED_META = "dw_crashed"
"""Job meta flag set when a chunk is recovered after a death: its next run is careful (worker.careful)."""

RUNNING_FIELD = "running"
"""Crash record field holding the marker of the wave of tasks that runs now."""

UNKNOWN_CAUSE = "exit status unknown: no supervisor saw the process end"
"""What a WorkerDied message says when no supervisor noted how the process ended (it was killed with it)."""

# KEYS: the crash record. ARGV: the marker read before (or ''), the death's cause (or ''), record TTL.
# Atomic, so that two sweepers recovering the same abandoned chunk blame its task once.
_BLAME = """
redis.call('HINCRBY', KEYS[1], 'deaths', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'running') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'running')
local mark = cjson.decode(ARGV[1])
local cause = cjson.null
if ARGV[2] ~= '' then cause = ARGV[2] end
if #mark['tasks'] == 1 then
    local name = 'blame:' .. string.format('%d', mark['tasks'][1])
    local deaths = cjson.decode(redis.call('HGET', KEYS[1], name) or '[]')
    table.insert(deaths, {mark['worker'], cause})
    redis.call('HSET', KEYS[1], name, cjson.encode(deaths))
else
    local suspects = cjson.decode(redis.call('HGET', KEYS[1], 'suspects') or '[]')
    for _, index in ipairs(mark['tasks']) do table.insert(suspects, index) end
    redis.call('HSET', KEYS[1], 'suspects', cjson.encode(suspects))
end
return 1
"""


@dataclass(frozen=True)
class Death:
    """One death of a worker process while a task ran alone: which worker, and how it ended if known."""

    worker: str
    cause: str | None


@dataclass
class CrashRecord:
    """A chunk's crash record, as read from Redis."""

    deaths: int = 0
    blame: dict[int, list[Death]] = field(default_factory=dict)
    suspects: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, client: Any, job_id: str) -> CrashRecord:
        """Read the record of chunk job `job_id` (empty if it has none)."""
        raw: dict[bytes, bytes] = client.hgetall(keys.crash_key(job_id))
        return cls.parse({k.decode(): v.decode() for k, v in raw.items()})

    @classmethod
    def parse(cls, fields: dict[str, str]) -> CrashRecord:
        """The record from its hash fields."""
        record = cls(deaths=int(fields.get("deaths") or 0))
        for name, value in fields.items():
            if name.startswith("blame:"):
                deaths = json.loads(value)
                record.blame[int(name[6:])] = [Death(str(w), None if c is None else str(c)) for w, c in deaths]
        record.suspects = {int(i) for i in json.loads(fields.get("suspects") or "[]")}
        return record

    def judged(self, index: int, limit: int) -> bool:
        """Whether task `index` was running at `limit` deaths or more, and so fails instead of running."""
        return len(self.blame.get(index, ())) >= limit


def running_marker(indices: list[int], worker: str, host: str, pid: int) -> str:
    """The marker a careful run writes before a wave of tasks (see the module docstring)."""
    return json.dumps({"tasks": indices, "worker": worker, "host": host, "pid": pid}, separators=(",", ":"))


# KEYS: the crash record. ARGV: the marker, the record's TTL if it has none yet. A marker already there
# is a careful wave's, written by the process itself: it stays (the recovery blames that wave).
_NOTE_RUNNING = """
if redis.call('HSETNX', KEYS[1], 'running', ARGV[1]) == 1 and redis.call('TTL', KEYS[1]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
end
"""


def note_running(client: Any, job_id: str, indices: list[int], worker: str, host: str, pid: int, ttl: int) -> None:
    """Mark tasks `indices` as running in chunk `job_id` when its process died, for `note_abandoned`
    (written by the dead process's supervisor, from worker.running's record, before the recovery)."""
    marker = running_marker(sorted(indices), worker, host, pid)
    client.register_script(_NOTE_RUNNING)(keys=[keys.crash_key(job_id)], args=[marker, ttl])


def describe_exit(code: int) -> str:
    """A process's exit status as a WorkerDied message names it: "signal 11 SIGSEGV", "exit code 3"."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {-code} {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def worker_died_message(deaths: list[Death]) -> str:
    """'the worker process died while running this task (signal 11 SIGSEGV) on worker-a, worker-b'."""
    causes = list(dict.fromkeys(d.cause or UNKNOWN_CAUSE for d in deaths))
    workers = list(dict.fromkeys(d.worker for d in deaths))
    return f"the worker process died while running this task ({'; '.join(causes)}) on {', '.join(workers)}"


def worker_died_result(spec: TaskSpec, deaths: list[Death], worker: str) -> TaskResult:
    """The WorkerDied failure of a task judged by its deaths."""
    message = worker_died_message(deaths)
    return TaskResult(
        spec.index, spec.task, spec.args, spec.kwargs, spec.id, False, None, "WorkerDied", message, worker
    )


def note_abandoned(client: Any, job_id: str, ttl: int) -> bool:
    """Record the death behind an abandoned chunk job: blame the task its marker names (or add the
    tasks of its wave to the suspects), with how the process ended when its supervisor noted it.

    Returns True if the death blamed a task or added suspects: progress toward isolating the crash,
    which the caller lets cost the chunk none of its retries (each task can be blamed only so often,
    so this cannot loop forever). A death that no marker names (an ordinary run whose supervisor died
    with it, or a death between tasks) returns False.
    """
    key = keys.crash_key(job_id)
    raw: bytes | None = client.hget(key, RUNNING_FIELD)
    marker = raw.decode() if raw else ""
    cause = ""
    if marker:
        try:
            parsed = json.loads(marker)
            note: bytes | None = client.get(keys.death_key(str(parsed["host"]), int(parsed["pid"])))
            cause = note.decode() if note else ""
        except (ValueError, KeyError, TypeError):
            marker = ""  # not a marker we wrote: blame nobody
    pipe = client.pipeline(transaction=False)
    client.register_script(_BLAME)(keys=[key], args=[marker, cause, ttl], client=pipe)
    count_event(pipe, WORKERS_LOST)
    blamed = pipe.execute()[0]
    return bool(blamed)
