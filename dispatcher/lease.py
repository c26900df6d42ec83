"""The submitter lease: who is submitting a batch, kept alive by a thread, and the verdict a reader
records on a batch whose submitter is gone before the end of its input (`abandoned`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

import redis

from common import keys
from common.connection import is_out_of_memory
from common.settings import Settings

log = logging.getLogger("dispatcher")

UNFINISHED_STATES = ("submitting", "open")
"""States of a batch whose submitter may still add tasks: while its lease lives, the total is not known."""
INCOMPLETE_STATES = ("aborted", "abandoned")
"""Final states of a batch whose input was not all submitted: its total is what was sent."""

_SETTLE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'submitting' or state == 'open' then
    local holder = redis.call('GET', KEYS[2])
    if not holder or holder == ARGV[1] then
        local sent = redis.call('HGET', KEYS[1], 'sent') or '0'
        redis.call('HSET', KEYS[1], 'state', 'abandoned', 'total', sent, 'ended', ARGV[2])
        redis.call('DEL', KEYS[2])
    end
end
return redis.call('HMGET', KEYS[1], 'state', 'total', 'sent', 'read', 'read_all', 'reason')
"""
# HSET before DEL: out of memory, Redis refuses the HSET and the script stops having changed nothing.


def holder() -> str:
    """This process, as the lease names it: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(value: bytes | str | None) -> bool:
    """True if the lease names a process of this host that no longer exists (known at once, no TTL)."""
    if value is None:
        return False
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    host, _, pid = text.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False


@dataclass(frozen=True)
class BatchRecord:
    """What the batch hash says about a batch's submission, once any verdict on it is recorded."""

    state: str
    total: int | None
    sent: int
    read: int | None
    read_all: bool
    reason: str
    recorded: bool = True
    """False when the verdict could not be written (Redis out of memory): the next reader writes it."""

    @property
    def incomplete(self) -> bool:
        """True when the batch's input was not all submitted."""
        return self.state in INCOMPLETE_STATES

    @property
    def unsubmitted(self) -> int | None:
        """Input lines read but never submitted, when the whole input was read; else None (unknown)."""
        if self.read is None or not self.read_all:
            return None
        return max(0, self.read - self.sent)


def settle(client: redis.Redis, batch_id: str) -> BatchRecord:
    """Read the batch's record; if its submitter is gone (lease expired, or its process on this host
    dead) before the end of its input, record the batch `abandoned` with the total it sent.

    One script checks and writes, so two readers reach the same verdict and the same total; a
    submitter that comes back later is refused by its own enqueue script.
    """
    batch_key, lease_key = keys.batch_key(batch_id), keys.submitter_key(batch_id)
    current: bytes | None = client.get(lease_key)  # type: ignore[assignment]
    dead = current if current is not None and holder_is_dead(current) else b""
    try:
        reply: list[bytes | None] = client.eval(_SETTLE, 2, batch_key, lease_key, dead, f"{time.time():.3f}")
    except redis.ResponseError as exc:
        if not is_out_of_memory(exc):
            raise
        return _unrecorded_verdict(client, batch_id, dead)
    return _record(reply)


def _unrecorded_verdict(client: redis.Redis, batch_id: str, dead: bytes) -> BatchRecord:
    """The verdict `settle` would record, computed from a read: Redis is out of memory."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.batch_key(batch_id), ["state", "total", "sent", "read", "read_all", "reason"])
        pipe.get(keys.submitter_key(batch_id))
        fields, lease = pipe.execute()
    record = _record(fields)
    if record.state in UNFINISHED_STATES and (lease is None or lease == dead):
        log.warning(
            "batch %s: its submitter is gone; Redis is out of memory, so the batch is not marked "
            "abandoned yet (the next reader does it)",
            batch_id,
        )
        return BatchRecord("abandoned", record.sent, record.sent, record.read, record.read_all, record.reason, False)
    return record


def _record(fields: list[bytes | None]) -> BatchRecord:
    state, total, sent, read, read_all, reason = (None if v is None else v.decode() for v in fields)
    return BatchRecord(
        state or "?",
        None if total is None else int(total),
        int(sent or 0),
        None if read is None else int(read),
        read_all == "1",
        reason or "",
    )


class LeaseKeeper:
    """Renews a batch's submitter lease from a daemon thread, every third of the lease, until
    stopped: a submitter holds its lease however long its consumer or its input keeps it waiting.

    Renewal never recreates a lease that is gone (SET XX): a reader may already have found the
    batch abandoned; the next enqueue script call decides.
    """

    def __init__(self, client: redis.Redis, settings: Settings, batch_id: str) -> None:
        self._client = client
        self._key = keys.submitter_key(batch_id)
        self._lease = settings.submitter_lease
        self.interval = settings.submitter_lease / 3
        """Seconds between renewals."""
        self._holder = holder()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start renewing (the caller has just written the lease)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"lease {self._key}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop renewing, and wait for a renewal in flight (so none lands after the lease is dropped)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._client.set(self._key, self._holder, ex=self._lease, xx=True)
            except (redis.RedisError, OSError) as exc:  # an outage: the next enqueue call renews it too
                log.debug("submitter lease %s not renewed: %s", self._key, exc)
