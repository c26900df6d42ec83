"""Stall recovery through its seam (the Watched protocol): lost and failed chunks resolved once."""

from __future__ import annotations

import fakeredis

from common import keys
from common.settings import Settings
from common.wire import TaskResult, decode_results
from dispatcher.chunking import ChunkSpan
from dispatcher.stalls import StallRecovery, StreamEntries


class FakeWatched:
    """A watcher that has seen the tasks in `seen` and records what stall recovery hands it."""

    def __init__(self, settings: Settings, chunks: list[ChunkSpan], seen: set[int]) -> None:
        self.settings = settings
        self.chunks = chunks
        self.total: int | None = sum(span.size for span in chunks)
        self.last_id = "0-0"
        self.seen = seen
        self.taken: list[tuple[int, list[int]]] = []
        self.absorbed: list[StreamEntries] = []

    def refresh_total(self) -> None:
        raise AssertionError("the total is known")

    def absorb_entries(self, entries: StreamEntries) -> list[TaskResult]:
        self.absorbed.append(entries)
        return []

    def is_seen(self, index: int) -> bool:
        return index in self.seen

    def take_failures(self, chunk: int, failures: list[TaskResult]) -> list[TaskResult]:
        self.taken.append((chunk, [f.index for f in failures]))
        self.seen.update(f.index for f in failures)
        self.chunks[chunk].done = self.chunks[chunk].size
        return failures


def test_a_vanished_chunk_fails_its_tasks_without_a_result_once(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    # chunk 0's job is queued; chunk 1's job is gone, and one of its tasks already has its result
    fake_client.hset(keys.rq_job_key(keys.chunk_job_id("b1", 0)), "status", "queued")
    watched = FakeWatched(fake_settings, [ChunkSpan(0, 1, 2), ChunkSpan(2, 4, 3)], seen={3})
    stalls = StallRecovery(fake_client, "b1", watched)

    fresh = stalls.check(force=True)

    assert [(r.index, r.ok, r.error_type) for r in fresh] == [(2, False, "TaskLost"), (4, False, "TaskLost")]
    assert watched.taken == [(1, [2, 4])] and watched.absorbed == [[]]
    entries = fake_client.xrange(keys.results_key("b1"))
    assert [[r.index for r in decode_results(fields)[1]] for _id, fields in entries] == [[2, 4]]
    record = fake_client.hgetall(keys.batch_key("b1"))
    assert (record[b"done"], record[b"failed"]) == (b"2", b"2")
    assert stalls.check(force=True) == []  # resolved: not checked again


def test_checks_wait_for_the_heartbeat_interval_unless_forced(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    settings = fake_settings.with_overrides(heartbeat_interval=3600, heartbeat_ttl=7200)
    watched = FakeWatched(settings, [ChunkSpan(0, 0, 1)], seen=set())
    stalls = StallRecovery(fake_client, "b1", watched)
    assert stalls.check() == [] and watched.taken == []
    assert [r.error_type for r in stalls.check(force=True)] == ["TaskLost"]


def test_resolving_a_chunk_skips_the_tasks_already_seen(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    watched = FakeWatched(fake_settings, [ChunkSpan(0, 2, 3)], seen={0, 2})
    stalls = StallRecovery(fake_client, "b1", watched)
    fresh = stalls.resolve_chunk(0, "Cancelled", "cancelled before it ran")
    assert [(r.index, r.error_type, r.error_message) for r in fresh] == [(1, "Cancelled", "cancelled before it ran")]
