"""Settings shared by both sides: read from the environment, overridable by CLI options, frozen.

The fields of `Settings` are the one table of settings: each names its environment variable, its
default and its help, and both `Settings.from_env` and the CLIs' options (common.cli_options) are
built from them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from common.errors import ConfigurationError

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def _setting(env: str, default: T, help: str, *, shown: bool = True) -> T:
    """A field of Settings: its environment variable, default and one-line help (the CLI's too).

    `shown=False` keeps it out of repr (a password)."""
    return dataclasses.field(default=default, repr=shown, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every connection setting and limit, in one immutable object."""

    redis_url: str = _setting(
        "REDIS_URL",
        DEFAULT_REDIS_URL,
        "Redis URL (redis://, rediss:// for TLS, unix://, redis+sentinel:// for a master under Sentinel).",
    )
    sentinel_password: str = _setting(
        "DW_SENTINEL_PASSWORD",
        "",
        "Password of the sentinels (a redis+sentinel URL's sentinel_password query parameter wins).",
        shown=False,
    )
    min_replicas: int = _setting(
        "DW_MIN_REPLICAS", 0, "Replicas that must confirm each enqueue and result write (Redis WAIT)."
    )
    min_replicas_timeout: float = _setting(
        "DW_MIN_REPLICAS_TIMEOUT", 5.0, "Seconds a write waits for those replicas before it goes on with a warning."
    )
    queue: str = _setting("DW_QUEUE", "tasks", "RQ queue that chunks go to.")
    result_ttl: int = _setting("DW_RESULT_TTL", 86_400, "Seconds a batch's results stay in Redis.")
    task_timeout: float = _setting("DW_TASK_TIMEOUT", 60.0, "Seconds a task may run before it is stopped.")
    heartbeat_interval: float = _setting("DW_HEARTBEAT_INTERVAL", 2.0, "Seconds between a busy worker's heartbeats.")
    heartbeat_ttl: int = _setting(
        "DW_HEARTBEAT_TTL", 10, "Seconds without a heartbeat after which a chunk counts as abandoned and runs again."
    )
    job_retries: int = _setting("DW_JOB_RETRIES", 3, "Times a chunk is re-run after its worker died or its job failed.")
    crash_limit: int = _setting(
        "DW_CRASH_LIMIT",
        2,
        "Deaths of a worker process while a task was running alone, after which that task fails with "
        "WorkerDied instead of running again; judged by the worker that re-runs the chunk.",
    )
    max_arg_bytes: int = _setting("DW_MAX_ARG_BYTES", 1_000_000, "Largest JSON size of one task's arguments, in bytes.")
    max_result_bytes: int = _setting(
        "DW_MAX_RESULT_BYTES", 1_000_000, "Largest JSON size of one task's result; a larger one fails that task."
    )
    max_batch_tasks: int = _setting("DW_MAX_BATCH_TASKS", 10_000_000, "Most tasks in one batch.")
    outage_grace: float = _setting(
        "DW_OUTAGE_GRACE", 120.0, "Seconds a waiting dispatcher retries while Redis is unreachable, then exits 3."
    )
    wait_for_redis: float = _setting(
        "DW_WAIT_FOR_REDIS",
        30.0,
        "At start, wait up to S seconds for an unreachable Redis, then exit 3; 0 fails at once.",
    )
    submitter_lease: int = _setting(
        "DW_SUBMITTER_LEASE",
        30,
        "Seconds a submitting dispatcher's lease lives unless renewed; a reader that cannot check the "
        "submitter's process (another host) waits this long before it calls a batch abandoned.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from environment variables, then apply non-None overrides (CLI options)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, setting in SETTINGS.items():
            raw = env.get(setting.env)
            if raw is not None and raw != "":
                values[name] = setting.parse(raw)
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
        positive = (
            "result_ttl",
            "task_timeout",
            "heartbeat_interval",
            "heartbeat_ttl",
            "outage_grace",
            "submitter_lease",
            "min_replicas_timeout",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.heartbeat_ttl < 2 * self.heartbeat_interval:
            raise ConfigurationError("heartbeat_ttl must be at least twice heartbeat_interval")
        if self.crash_limit < 1:
            raise ConfigurationError(f"crash_limit must be at least 1, got {self.crash_limit}")
        not_negative = (
            "job_retries",
            "max_arg_bytes",
            "max_result_bytes",
            "max_batch_tasks",
            "wait_for_redis",
            "min_replicas",
        )
        for name in not_negative:
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class Setting:
    """One row of the table of settings, as the CLIs and `Settings.from_env` read it."""

    name: str
    env: str
    default: Any
    help: str
    kind: type

    def parse(self, raw: str) -> Any:
        """The value of the environment variable's text; ConfigurationError if it is not one."""
        try:
            return self.kind(raw)
        except ValueError:
            raise ConfigurationError(f"{self.env}={raw!r} is not a valid {self.kind.__name__}") from None


SETTINGS: dict[str, Setting] = {
    field.name: Setting(field.name, field.metadata["env"], field.default, field.metadata["help"], type(field.default))
    for field in dataclasses.fields(Settings)
}
"""The table of settings, by field name, read off the fields of Settings."""
