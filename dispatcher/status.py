"""What is going on in Redis: queue depth, live workers and their capacity, recent batches."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from common import keys
from common.events import recent_events
from common.jobs import InertJob
from common.routing import BUILTIN_TASKS, queue_family, split_queue
from common.settings import Settings
from dispatcher.lease import UNFINISHED_STATES, settle

F = keys.WORKER_FIELD_PREFIX


def live_workers(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """Registered, heartbeating workers that serve the settings' queue, with what they advertise."""
    queue = Queue(settings.queue, connection=client, serializer=JSONSerializer, job_class=InertJob)
    worker_keys = sorted(Worker.all_keys(connection=client, queue=queue))
    names = [worker_key.removeprefix(keys.RQ_WORKER_PREFIX) for worker_key in worker_keys]
    pipe = client.pipeline(transaction=False)
    for name, worker_key in zip(names, worker_keys, strict=True):
        pipe.hgetall(worker_key)
        executions_key = keys.rq_worker_executions_key(name)  # RQ 3's; RQ 2 names the job in the hash
        if executions_key is not None:
            pipe.smembers(executions_key)
    replies = iter(pipe.execute() if worker_keys else [])
    workers = []
    for name in names:
        fields = next(replies)
        executions = next(replies) if keys.rq_worker_executions_key(name) is not None else set()
        if not fields:
            continue  # expired: the worker died without unregistering
        text = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        current_job = _current_job(text, executions)
        workers.append(
            {
                "name": name,
                "host": text.get(F + "host") or text.get("hostname", ""),
                "pid": int(text.get(F + "pid") or text.get("pid") or 0),
                "state": text.get("state", "?"),
                "slots": int(text.get(F + "slots") or 1),
                "current_job": current_job,
                "successful_jobs": int(text.get("successful_job_count") or 0),
                "failed_jobs": int(text.get("failed_job_count") or 0),
                "last_heartbeat": text.get("last_heartbeat"),
                "tasks": json.loads(text.get(F + "tasks") or "[]"),
                "tasks_done": int(text.get(keys.TASKS_DONE_FIELD) or 0),
                "current_batch": _batch_of(current_job),
            }
        )
    return workers


def route_queues(client: redis.Redis, queue: str) -> list[str]:
    """The RQ queues of `queue`: itself, then the queue of each task route ever enqueued to (common.routing)."""
    raw: set[bytes] = client.smembers(Queue.redis_queues_keys)  # type: ignore[assignment]
    prefix = Queue.redis_queue_namespace_prefix
    return queue_family(queue, (key.decode(errors="replace").removeprefix(prefix) for key in raw))


def _current_job(fields: dict[str, str], executions: set[bytes]) -> str | None:
    """The job a worker runs: RQ 2 names it in the worker's hash, RQ 3 in its set of executions
    (`job id:execution id`)."""
    if fields.get("current_job"):
        return fields["current_job"]
    for member in sorted(executions):
        return member.decode().rpartition(":")[0] or None
    return None


def _batch_of(job_id: str | None) -> str | None:
    parsed = keys.parse_chunk_job_id(job_id) if job_id else None
    return parsed[0] if parsed else None


def live_capacity(client: redis.Redis, settings: Settings) -> tuple[int, int]:
    """(worker processes, task slots) serving the queue now; (1, 1) when none is live yet."""
    workers = live_workers(client, settings)
    if not workers:
        return 1, 1
    return len(workers), sum(w["slots"] for w in workers)


def recent_batches(client: redis.Redis, limit: int = 10) -> list[dict[str, Any]]:
    """The newest batches, newest first, with their progress."""
    raw_ids: list[bytes] = client.zrevrange(keys.BATCHES, 0, limit - 1)  # type: ignore[assignment]
    ids = [raw.decode() for raw in raw_ids]
    pipe = client.pipeline(transaction=False)
    for batch_id in ids:
        pipe.hgetall(keys.batch_key(batch_id))
    batches = []
    for batch_id, record in zip(ids, pipe.execute(), strict=True):
        if not record:
            continue
        text = {k.decode(): v.decode() for k, v in record.items()}
        if text.get("state") in UNFINISHED_STATES:  # its submitter may be gone: the verdict is recorded now
            verdict = settle(client, batch_id)
            text.update(state=verdict.state, sent=str(verdict.sent))
            if verdict.total is not None:
                text["total"] = str(verdict.total)
        total = int(text["total"]) if "total" in text else None
        done = int(text.get("done", 0))
        batches.append(
            {
                "batch_id": batch_id,
                "state": display_state(text.get("state", "?"), total, done),
                "created": float(text.get("created", 0)),
                "total": total,
                "done": min(done, total) if total is not None else done,
                "failed": int(text.get("failed", 0)),
                "sent": int(text.get("sent", 0)),
                "read": int(text["read"]) if "read" in text else None,
                "queue": text.get("queue"),
            }
        )
    return batches


def display_state(state: str, total: int | None, done: int) -> str:
    """The state `status` shows: the recorded one, except that a fully submitted batch whose every
    task has a result is `finished`. Aborted, abandoned and cancelled batches keep saying so, however
    many of their tasks are done: not all of their input ran."""
    if state == "submitted" and total is not None and done >= total:
        return "finished"
    return state


def collect_status(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """A snapshot for `dispatcher status`: the queue summed over its task routes, and each route's
    depth; the live workers, with the user tasks each offers; who offers each user task; batches;
    reliability events of the last hour (common.events: tasks retried, worker processes lost)."""
    workers = live_workers(client, settings)
    offered: dict[str, list[str]] = {}
    for worker in workers:
        worker["user_tasks"] = sorted(t for t in worker["tasks"] if isinstance(t, str) and t not in BUILTIN_TASKS)
        for name in worker["user_tasks"]:
            offered.setdefault(name, []).append(worker["name"])
    routes: list[dict[str, Any]] = []
    for name in route_queues(client, settings.queue):
        queue = Queue(name, connection=client, serializer=JSONSerializer, job_class=InertJob)
        route = split_queue(name)[1]
        failed = queue.failed_job_registry
        routes.append(
            {
                "queue": name,
                "task": route,
                "queued_chunks": queue.count,
                "running_chunks": len(queue.started_job_registry),
                "failed_chunks": len(failed),
                "failed_chunk_ids": [str(i) for i in failed.get_job_ids(0, 9, desc=True)],
                "offered_by": len(workers) if route is None else len(offered.get(route, [])),
            }
        )
    return {
        "time": time.time(),
        "queue": {
            "name": settings.queue,
            "queued_chunks": sum(r["queued_chunks"] for r in routes),
            "running_chunks": sum(r["running_chunks"] for r in routes),
            "failed_chunks": sum(r["failed_chunks"] for r in routes),
            "failed_chunk_ids": [i for r in routes for i in r["failed_chunk_ids"]][:10],
            "routes": routes,
        },
        "workers": workers,
        "offered": dict(sorted(offered.items())),
        "batches": recent_batches(client),
        "last_hour": recent_events(client),
    }
