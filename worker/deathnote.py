"""Note in Redis how a supervised worker process died, for the recovery of the chunk it was running."""

from __future__ import annotations

import logging
import socket

import redis

from common import keys
from common.connection import connect
from common.crash import describe_exit, note_running
from common.settings import Settings
from worker.running import Running

log = logging.getLogger("worker")

NOTE_TIMEOUT = 2.0
"""Seconds a note may wait on Redis: the supervisor replaces its dead child only after writing it."""


class DeathNotes:
    """Part of the supervisor's exit hook: writes "signal 11 SIGSEGV" or "exit code 3" under the dead
    process's host and pid, and marks the tasks it was running (worker.running) in its chunk's crash
    record, where common.crash.note_abandoned finds both."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: redis.Redis | None = None
        self._host = socket.gethostname()

    def __call__(self, pid: int, code: int, worker: str = "", running: Running | None = None) -> None:
        """Write the note (and the marker of `running`, the tasks worker `worker` was running); a Redis
        failure is logged (the task's error then says the cause is unknown, or the death blames nobody)."""
        try:
            if self._client is None:  # made on first use: the children are forked before any death
                self._client = connect(self._settings, socket_timeout=NOTE_TIMEOUT)
            pipe = self._client.pipeline(transaction=False)
            pipe.set(keys.death_key(self._host, pid), describe_exit(code), ex=keys.DEATH_NOTE_TTL)
            if running is not None:
                note_running(pipe, running.job_id, running.indices, worker, self._host, pid, keys.DEATH_NOTE_TTL)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("worker process %d: could not note its death in Redis: %s", pid, exc)
