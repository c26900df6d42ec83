"""Settings shared by both sides: read from the environment, overridable by CLI options, frozen."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.errors import ConfigurationError
from common.settings_table import DEFAULT_REDIS_URL, SETTINGS, Setting

__all__ = ["DEFAULT_REDIS_URL", "SETTINGS", "Setting", "Settings"]


def _default(name: str) -> Any:
    return SETTINGS[name].default


@dataclass(frozen=True)
class Settings:
    """Every connection setting and limit, in one immutable object.

    A field for each row of the table of settings (common.settings_table: its variable, default and
    help), in its order.
    """

    redis_url: str = _default("redis_url")
    sentinel_password: str = dataclasses.field(default=_default("sentinel_password"), repr=False)
    min_replicas: int = _default("min_replicas")
    min_replicas_timeout: float = _default("min_replicas_timeout")
    queue: str = _default("queue")
    result_ttl: int = _default("result_ttl")
    task_timeout: float = _default("task_timeout")
    heartbeat_interval: float = _default("heartbeat_interval")
    heartbeat_ttl: int = _default("heartbeat_ttl")
    job_retries: int = _default("job_retries")
    crash_limit: int = _default("crash_limit")
    max_arg_bytes: int = _default("max_arg_bytes")
    max_result_bytes: int = _default("max_result_bytes")
    max_batch_tasks: int = _default("max_batch_tasks")
    outage_grace: float = _default("outage_grace")
    wait_for_redis: float = _default("wait_for_redis")
    submitter_lease: int = _default("submitter_lease")

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
