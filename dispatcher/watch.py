"""Await a batch's results: blocking reads of its result stream, de-duplicated by task index; stalled
chunks (failed, vanished, of dead workers) are recovered by dispatcher.stalls, so a wait never hangs."""

from __future__ import annotations

import logging
from typing import Any

import redis

from common import keys
from common.errors import BatchNotFound, PayloadError
from common.settings import Settings
from common.wire import TaskResult, decode_results
from dispatcher.chunking import ChunkSpan
from dispatcher.lease import UNFINISHED_STATES, BatchRecord, settle
from dispatcher.stalls import StallRecovery, StreamEntries

log = logging.getLogger("dispatcher")

BLOCK_MS = 500
"""Longest single blocking read of the result stream; between reads, stalled chunks are checked."""

READ_COUNT = 50
"""Stream entries taken per read: each holds up to 2,000 results, and a reply is decoded whole, so
this bounds the dispatcher's memory when it falls behind (1000 let one read carry a million results)."""


class BatchWatcher:
    """Follows one batch's result stream from the start; yields each task's result exactly once."""

    def __init__(self, client: redis.Redis, settings: Settings, batch_id: str) -> None:
        self.client = client
        self.settings = settings
        self.batch_id = batch_id
        self.stream = keys.results_key(batch_id)
        self.last_id = "0-0"
        self.total: int | None = None
        self.resolved = 0
        self.failed = 0
        self.chunks: list[ChunkSpan] = []
        self._seen = bytearray()
        self.record: BatchRecord | None = None
        """The batch's record as a reattached reader last read it (None: this process submits it)."""
        self._stalls = StallRecovery(client, batch_id, self)

    @property
    def complete(self) -> bool:
        """True when every task of a fully submitted batch has its result."""
        return self.total is not None and self.resolved >= self.total

    def add_chunk(self, span: ChunkSpan) -> None:
        """Tell the watcher about a chunk the submitter just enqueued."""
        self.chunks.append(span)

    def set_total(self, total: int) -> None:
        """Tell the watcher the batch is fully submitted with `total` tasks."""
        self.total = total

    def load(self) -> None:
        """Load the batch's record and chunk index from Redis (to reattach to a batch by id)."""
        record: dict[bytes, bytes] = self.client.hgetall(keys.batch_key(self.batch_id))  # type: ignore[assignment]
        if not record:
            raise BatchNotFound(f"no batch {self.batch_id!r} in Redis (wrong id, or its results expired)")
        queue = record.get(b"queue", b"").decode()
        if queue and queue != self.settings.queue:
            self.settings = self.settings.with_overrides(queue=queue)
        self.refresh_total()

    def _load_chunks(self) -> None:
        key = keys.chunks_key(self.batch_id)
        spans: list[bytes] = self.client.lrange(key, len(self.chunks), -1)  # type: ignore[assignment]
        for raw in spans:
            first, last, size = (int(part) for part in raw.split(b":"))
            self.chunks.append(ChunkSpan(first, last, size))

    def refresh_total(self) -> None:
        """Re-read the batch record (for a reattached reader while the batch is still being submitted).

        If the submitting process is gone (its lease expired, or its pid on this host is dead) before
        it finished, the batch is recorded `abandoned` with what it managed to send, and the reader
        settles for that count instead of waiting forever (see dispatcher.lease.settle).
        """
        record = settle(self.client, self.batch_id)
        self.record = record
        if record.state not in UNFINISHED_STATES and record.total is not None:
            self.total = record.total
        self._load_chunks()

    def poll(self, block_ms: int | None) -> list[TaskResult]:
        """Block up to `block_ms` (None: do not block) for new results; return the ones not seen before."""
        reply: Any = self.client.xread({self.stream: self.last_id}, count=READ_COUNT, block=block_ms)
        return self.absorb(reply)

    def absorb(self, reply: Any) -> list[TaskResult]:
        """The results not seen before in the reply of an XREAD of this stream from `last_id`
        with count READ_COUNT (what `poll` sends; a caller may send it in its own pipeline)."""
        fresh: list[TaskResult] = []
        for _stream, entries in reply or ():
            self._absorb(entries, fresh)
        return fresh

    def absorb_entries(self, entries: StreamEntries) -> list[TaskResult]:
        """The results not seen before in stream entries that follow `last_id` (an XRANGE's reply)."""
        fresh: list[TaskResult] = []
        self._absorb(entries, fresh)
        return fresh

    def _absorb(self, entries: StreamEntries, fresh: list[TaskResult]) -> None:
        for entry_id, fields in entries:
            self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                chunk, results = decode_results(fields)
            except (PayloadError, ValueError, TypeError, IndexError) as exc:
                log.warning("batch %s: ignoring malformed result entry %s: %s", self.batch_id, self.last_id, exc)
                continue
            span = self.chunks[chunk] if 0 <= chunk < len(self.chunks) else None
            if span is not None and span.last >= len(self._seen):
                self._seen.extend(bytes(span.last + 1 - len(self._seen)))
            before = len(fresh)
            failed = 0
            seen, known = self._seen, len(self._seen)
            for result in results:  # the per-result loop of a million-task batch: kept to the bone
                index = result.index
                if 0 <= index < known:
                    if seen[index]:
                        continue
                    seen[index] = 1
                elif not self._mark_seen(index):
                    continue
                else:
                    known = len(seen)
                fresh.append(result)
                if not result.ok:
                    failed += 1
            added = len(fresh) - before
            self.resolved += added
            self.failed += failed
            if span is not None:
                span.done += added

    def _mark_seen(self, index: int) -> bool:
        seen = self._seen
        if 0 <= index < len(seen) and not seen[index]:
            seen[index] = 1
            return True
        if index < 0:
            return False
        if index >= len(self._seen):
            self._seen.extend(bytes(max(index + 1 - len(self._seen), len(self._seen))))
        if self._seen[index]:
            return False
        self._seen[index] = 1
        return True

    def check_stalled(self, force: bool = False) -> list[TaskResult]:
        """Every few seconds: recover abandoned chunks, and resolve chunks that failed or vanished.

        Returns the results this produced (failures for tasks whose chunk is gone for good).
        """
        return self._stalls.check(force)

    def resolve_chunk(self, chunk: int, error_type: str, reason: str) -> list[TaskResult]:
        """Give every task of the chunk still without a result a failure (e.g. a cancelled chunk)."""
        return self._stalls.resolve_chunk(chunk, error_type, reason)

    def take_failures(self, chunk: int, failures: list[TaskResult]) -> list[TaskResult]:
        """Count the failures stall recovery published for `chunk`; return the ones not seen before.
        The chunk is done after them, whatever its count said."""
        fresh: list[TaskResult] = []
        span = self.chunks[chunk]
        for result in failures:
            if self._mark_seen(result.index):
                fresh.append(result)
                self.resolved += 1
                self.failed += 1
                span.done += 1
        span.done = max(span.done, span.size)
        return fresh

    def is_seen(self, index: int) -> bool:
        """Whether task `index` already has its result."""
        return index < len(self._seen) and bool(self._seen[index])
