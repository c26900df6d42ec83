"""Settings shared by both sides: read from the environment, overridable by CLI options, frozen."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ConfigurationError

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


@dataclass(frozen=True)
class Settings:
    """Every connection setting and limit, in one immutable object."""

    redis_url: str = DEFAULT_REDIS_URL
    """Where Redis is: redis://[[user]:password@]host:port/db, rediss:// for TLS, unix:///path, or
    redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME[/db] (rediss+sentinel:// for
    TLS) for a master that Redis Sentinel watches; the URL's credentials are the master's."""
    sentinel_password: str = dataclasses.field(default="", repr=False)
    """Password of the sentinels (a redis+sentinel URL's `sentinel_password` query parameter wins)."""
    min_replicas: int = 0
    """Replicas that must confirm each enqueue and result write (Redis WAIT) before it counts as done."""
    min_replicas_timeout: float = 5.0
    """Seconds a write waits for those replicas before it goes on with a warning."""
    queue: str = "tasks"
    """The RQ queue that chunks go to."""
    result_ttl: int = 86_400
    """Seconds a batch's results stay in Redis after its last write."""
    task_timeout: float = 60.0
    """Seconds one task may run before it is stopped and fails alone."""
    heartbeat_interval: float = 2.0
    """Seconds between a busy worker's heartbeats."""
    heartbeat_ttl: int = 10
    """Seconds without a heartbeat after which a chunk counts as abandoned and runs again."""
    job_retries: int = 3
    """How many times a chunk is re-run after its worker died or its job failed."""
    crash_limit: int = 2
    """Deaths of a worker process while a task was its running task, after which that task fails
    alone with WorkerDied instead of running again (common.crash)."""
    max_arg_bytes: int = 1_000_000
    """Largest JSON encoding of one task's arguments."""
    max_result_bytes: int = 1_000_000
    """Largest JSON encoding of one task's result value."""
    max_batch_tasks: int = 10_000_000
    """Largest number of tasks in one batch."""
    outage_grace: float = 120.0
    """Seconds a waiting dispatcher keeps retrying while Redis is unreachable, before it exits 3."""
    wait_for_redis: float = 30.0
    """Seconds a starting worker waits for an unreachable Redis before it exits 3 (0: not at all)."""
    submitter_lease: int = 30
    """Seconds a submitting dispatcher's lease lives unless renewed; a reader that cannot check the
    submitter's process (another host) waits this long before it calls a batch abandoned."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply non-None overrides (CLI options)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_VARS[field.name])
            if raw is not None and raw != "":
                values[field.name] = _convert(field.name, raw, type(getattr(cls, field.name)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given non-None fields replaced."""
        changed = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        changed.validate()
        return changed

    def validate(self) -> None:
        """Raise ConfigurationError for values that cannot work."""
        if not self.queue or not all(c.isalnum() or c in "_-.:" for c in self.queue):
            raise ConfigurationError(f"invalid queue name {self.queue!r}: use letters, digits and _-.:")
        for name in (
            "result_ttl",
            "task_timeout",
            "heartbeat_interval",
            "heartbeat_ttl",
            "outage_grace",
            "submitter_lease",
            "min_replicas_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.heartbeat_ttl < 2 * self.heartbeat_interval:
            raise ConfigurationError("heartbeat_ttl must be at least twice heartbeat_interval")
        if self.crash_limit < 1:
            raise ConfigurationError(f"crash_limit must be at least 1, got {self.crash_limit}")
        for name in ("job_retries", "max_arg_bytes", "max_result_bytes", "max_batch_tasks", "wait_for_redis",
                     "min_replicas"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative, got {getattr(self, name)}")


ENV_VARS: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "queue": "DW_QUEUE",
    "result_ttl": "DW_RESULT_TTL",
    "task_timeout": "DW_TASK_TIMEOUT",
    "heartbeat_interval": "DW_HEARTBEAT_INTERVAL",
    "heartbeat_ttl": "DW_HEARTBEAT_TTL",
    "job_retries": "DW_JOB_RETRIES",
    "crash_limit": "DW_CRASH_LIMIT",
    "max_arg_bytes": "DW_MAX_ARG_BYTES",
    "max_result_bytes": "DW_MAX_RESULT_BYTES",
    "max_batch_tasks": "DW_MAX_BATCH_TASKS",
    "outage_grace": "DW_OUTAGE_GRACE",
    "wait_for_redis": "DW_WAIT_FOR_REDIS",
    "submitter_lease": "DW_SUBMITTER_LEASE",
    "sentinel_password": "DW_SENTINEL_PASSWORD",
    "min_replicas": "DW_MIN_REPLICAS",
    "min_replicas_timeout": "DW_MIN_REPLICAS_TIMEOUT",
}
"""The environment variable behind each setting."""


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ConfigurationError(f"{ENV_VARS[name]}={raw!r} is not a valid {kind.__name__}") from None
