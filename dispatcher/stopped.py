"""What a batch that stopped early says: the reason its record keeps, and the error that tells the
user what became of the batch (what was enqueued goes on, and how to follow or cancel it)."""

from __future__ import annotations

import redis

from common.connection import describe_redis_error, is_out_of_memory, redact_url
from common.errors import BatchInterrupted, OutputFailed, RedisOutOfMemory, RedisUnavailable
from common.settings import Settings


def abort_reason(exc: BaseException) -> str:
    """Why submission stopped, as the batch record keeps it."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, BrokenPipeError):
        return "the dispatcher's output was closed"
    if is_out_of_memory(exc):
        return "Redis out of memory"
    return f"{type(exc).__name__}: {exc}"


def goes_on_note(batch_id: str) -> str:
    """The note for a batch whose input was all enqueued: it goes on without this process."""
    return (
        f"batch {batch_id} goes on: `dispatcher results {batch_id}` shows its results, "
        f"`dispatcher cancel {batch_id}` cancels it"
    )


def stopped_note(batch_id: str, sent: int, unrecorded: str | None) -> str:
    """The note for a batch whose submission stopped after `sent` tasks were enqueued."""
    if sent:
        note = (
            f"batch {batch_id} stopped after {sent} tasks were enqueued; the rest of the input was not "
            f"submitted. The {sent} tasks go on: `dispatcher results {batch_id}` shows their results, "
            f"`dispatcher cancel {batch_id}` cancels them"
        )
    else:
        note = f"nothing of batch {batch_id} was enqueued"
    if unrecorded:
        note += f" (its record could not be marked aborted: {unrecorded}; the next reader marks it abandoned)"
    return note


def in_flight_error(exc: BaseException, settings: Settings, note: str) -> BaseException:
    """The error that replaces `exc`, an interruption or a Redis failure while a batch is in flight,
    saying what became of the batch; any other error is raised as it is."""
    if isinstance(exc, KeyboardInterrupt):
        return BatchInterrupted(f"interrupted; {note}")
    if isinstance(exc, RedisUnavailable):
        return exc  # the outage guard's message names the batch and both commands already
    if isinstance(exc, OutputFailed):
        return OutputFailed(f"{exc}; {note}")
    if isinstance(exc, redis.RedisError) or (isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError)):
        if is_out_of_memory(exc):
            where = redact_url(settings.redis_url)
            return RedisOutOfMemory(f"Redis at {where} is out of memory (maxmemory reached, nothing to evict): {note}")
        return RedisUnavailable(f"{describe_redis_error(settings.redis_url, exc)}; {note}")
    return exc
