"""The worker's side of cancelling: a chunk of a cancelled batch is answered, not run."""

from __future__ import annotations

from typing import Any

from common import keys
from common.cancel import CANCELLED_FIELD


def cancel_probe(job_id: str) -> tuple[str, str] | None:
    """The (hash key, field) whose presence means the chunk job `job_id` belongs to a cancelled batch;
    the worker reads it in the same step that starts the job."""
    parsed = keys.parse_chunk_job_id(job_id)
    return None if parsed is None else (keys.batch_key(parsed[0]), CANCELLED_FIELD)


def batch_cancelled(job: Any, batch_id: str) -> bool:
    """Whether the batch was cancelled: read when the job started, or one HEXISTS per chunk (not per task)."""
    probe = (keys.batch_key(batch_id), CANCELLED_FIELD)
    known: dict[tuple[str, str], bool] = getattr(job, "start_probes", None) or {}
    if probe in known:
        return known[probe]
    return bool(job.connection.hexists(*probe))
