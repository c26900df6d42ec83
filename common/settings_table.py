"""The table of settings: each one's name, environment variable, default, help and type.

`Settings` (common.settings) declares a field for each row and reads the variables through it; the
options of both CLIs (common.cli) are built from it. It imports nothing at start, so that
`--help` can read it without paying for the rest.
"""

from __future__ import annotations

from typing import Any

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


class Setting:
    """One row: a setting's name (a field of Settings), variable, default, one-line help and type."""

    __slots__ = ("default", "env", "help", "kind", "name")

    def __init__(self, name: str, env: str, default: Any, help: str) -> None:
        self.name, self.env, self.default, self.help = name, env, default, help
        self.kind: type = type(default)

    def parse(self, raw: str) -> Any:
        """The value of the variable's text; ConfigurationError if it is not one."""
        try:
            return self.kind(raw)
        except ValueError:
            from common.errors import ConfigurationError

            raise ConfigurationError(f"{self.env}={raw!r} is not a valid {self.kind.__name__}") from None


SETTINGS: dict[str, Setting] = {
    row.name: row
    for row in (
        Setting(
            "redis_url",
            "REDIS_URL",
            DEFAULT_REDIS_URL,
            "Redis URL (redis://, rediss:// for TLS, unix://, redis+sentinel:// for a master under Sentinel).",
        ),
        Setting(
            "sentinel_password",
            "DW_SENTINEL_PASSWORD",
            "",
            "Password of the sentinels (a redis+sentinel URL's sentinel_password query parameter wins).",
        ),
        Setting(
            "min_replicas",
            "DW_MIN_REPLICAS",
            0,
            "Replicas that must confirm each enqueue and result write (Redis WAIT) before it counts as done.",
        ),
        Setting(
            "min_replicas_timeout",
            "DW_MIN_REPLICAS_TIMEOUT",
            5.0,
            "Seconds a write waits for those replicas before it goes on with a warning.",
        ),
        Setting("queue", "DW_QUEUE", "tasks", "RQ queue that chunks go to."),
        Setting("result_ttl", "DW_RESULT_TTL", 86_400, "Seconds a batch's results stay in Redis."),
        Setting("task_timeout", "DW_TASK_TIMEOUT", 60.0, "Seconds a task may run before it is stopped."),
        Setting("heartbeat_interval", "DW_HEARTBEAT_INTERVAL", 2.0, "Seconds between a busy worker's heartbeats."),
        Setting(
            "heartbeat_ttl",
            "DW_HEARTBEAT_TTL",
            10,
            "Seconds without a heartbeat after which a chunk counts as abandoned and runs again.",
        ),
        Setting("job_retries", "DW_JOB_RETRIES", 3, "Times a chunk is re-run after its worker died or its job failed."),
        Setting(
            "crash_limit",
            "DW_CRASH_LIMIT",
            2,
            "Deaths of a worker process while a task was running alone, after which that task fails with "
            "WorkerDied instead of running again; judged by the worker that re-runs the chunk.",
        ),
        Setting("max_arg_bytes", "DW_MAX_ARG_BYTES", 1_000_000, "Largest JSON size of one task's arguments, in bytes."),
        Setting(
            "max_result_bytes",
            "DW_MAX_RESULT_BYTES",
            1_000_000,
            "Largest JSON size of one task's result; a larger one fails that task.",
        ),
        Setting("max_batch_tasks", "DW_MAX_BATCH_TASKS", 10_000_000, "Most tasks in one batch."),
        Setting(
            "outage_grace",
            "DW_OUTAGE_GRACE",
            120.0,
            "Seconds a waiting dispatcher retries while Redis is unreachable, before it exits 3.",
        ),
        Setting(
            "wait_for_redis",
            "DW_WAIT_FOR_REDIS",
            30.0,
            "At start, wait up to S seconds for an unreachable Redis, then exit 3; 0 fails at once.",
        ),
        Setting(
            "submitter_lease",
            "DW_SUBMITTER_LEASE",
            30,
            "Seconds a submitting dispatcher's lease lives unless renewed; a reader that cannot check the "
            "submitter's process (another host) waits this long before it calls a batch abandoned.",
        ),
    )
}
"""Every setting, by name, in the order of Settings' fields."""
