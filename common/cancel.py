"""What both sides agree on about a cancelled batch: the mark in its hash and the result of a task it stopped."""

from __future__ import annotations

from common.wire import TaskResult, TaskSpec

CANCELLED_FIELD = "cancelled"
"""Field of the batch hash (the time of the cancel) that tells workers not to run its chunks."""

CANCEL_REASON = "the batch was cancelled before this task ran"
"""The error message of a cancelled task's result."""


def cancelled_result(spec: TaskSpec, worker: str) -> TaskResult:
    """The result of a task that never ran because its batch was cancelled."""
    return TaskResult(
        spec.index, spec.task, spec.args, spec.kwargs, spec.id, False, None, "Cancelled", CANCEL_REASON, worker, 0.0
    )
