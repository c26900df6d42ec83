"""Feeding a batch chunk by chunk (dispatcher.feed) on fakeredis: cuts, live-input pauses, back-pressure."""

from __future__ import annotations

import fakeredis
import pytest

from common import keys
from common.errors import LimitExceeded
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.batch import SubmitOptions
from dispatcher.feed import feed_batch
from dispatcher.lines import INPUT_IDLE
from dispatcher.reader import BadInput, LiveItem
from dispatcher.submit import BatchSubmitter
from dispatcher.watch import BLOCK_MS, BatchWatcher


def _parts(client: fakeredis.FakeRedis, settings: Settings, chunk_size: int) -> tuple[BatchSubmitter, BatchWatcher]:
    submitter = BatchSubmitter(client, settings, "b1", chunk_size)
    submitter.start("test")
    return submitter, BatchWatcher(client, settings, "b1")


def _tasks(names: str, first: int = 0) -> list[LiveItem]:
    return [TaskSpec(first + i, name, [i]) for i, name in enumerate(names.split())]


def _queued(client: fakeredis.FakeRedis) -> list[str]:
    return [span.decode() for span in client.lrange(keys.chunks_key("b1"), 0, -1)]


def test_chunks_are_cut_by_size_and_by_route(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter, watcher = _parts(fake_client, fake_settings, 3)
    items = _tasks("add add add add a.x a.x add")
    feed_batch(submitter, watcher, items, 3, SubmitOptions(wait=False), lambda block: None)
    assert [(s.first, s.last) for s in watcher.chunks] == [(0, 2), (3, 3), (4, 5), (6, 6)]
    submitter.finish()
    assert _queued(fake_client) == ["0:2:3", "3:3:1", "4:5:2", "6:6:1"]


def test_an_idle_live_input_sends_what_it_has_and_drains(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitter, watcher = _parts(fake_client, fake_settings, 100)
    drains: list[int | None] = []
    sent_when_idle: list[list[str]] = []

    def items() -> list[LiveItem]:
        return [*_tasks("add add"), INPUT_IDLE, INPUT_IDLE, *_tasks("add", 2)]

    def drain(block: int | None) -> None:
        drains.append(block)
        sent_when_idle.append(_queued(fake_client))

    options = SubmitOptions(wait=True, streaming=True)
    feed_batch(submitter, watcher, items(), 100, options, drain)
    assert sent_when_idle == [["0:1:2"], ["0:1:2"]] and drains == [None, None]
    assert [(s.first, s.last) for s in watcher.chunks] == [(0, 1), (2, 2)]  # the last one added, not sent yet


def test_a_bad_line_becomes_its_result_and_no_chunk(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter, watcher = _parts(fake_client, fake_settings, 10)
    items: list[LiveItem] = [BadInput(0, 1, "MalformedInput", "nope"), *_tasks("add", 1)]
    feed_batch(submitter, watcher, items, 10, SubmitOptions(wait=False), lambda block: None)
    submitter.finish()
    assert submitter.tasks == 2 and _queued(fake_client) == ["1:1:1"]
    assert fake_client.xlen(keys.results_key("b1")) == 1


def test_back_pressure_waits_for_results_while_too_many_are_in_flight(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitter, watcher = _parts(fake_client, fake_settings, 2)
    blocks: list[int | None] = []

    def drain(block: int | None) -> None:
        blocks.append(block)
        if block is not None:
            watcher.resolved += 2  # as if two results came in

    options = SubmitOptions(wait=True, max_in_flight=3)
    feed_batch(submitter, watcher, _tasks("add " * 8), 2, options, drain)
    assert BLOCK_MS in blocks
    assert submitter.tasks - watcher.resolved <= 3 + 2  # at most one chunk beyond the limit, never more


def test_the_batch_limit_stops_the_feed(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    settings = fake_settings.with_overrides(max_batch_tasks=3)
    submitter, watcher = _parts(fake_client, settings, 1)
    with pytest.raises(LimitExceeded, match="more than 3 tasks"):
        feed_batch(submitter, watcher, _tasks("add " * 5), 1, SubmitOptions(wait=False), lambda block: None)
    assert submitter.tasks == 3


def test_a_batch_at_its_limit_may_wait_for_input(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    # Exactly the limit, then the producer pauses: a pause is not a task over the limit.
    settings = fake_settings.with_overrides(max_batch_tasks=3)
    submitter, watcher = _parts(fake_client, settings, 1)
    items = [*_tasks("add " * 3), INPUT_IDLE, INPUT_IDLE]
    feed_batch(submitter, watcher, items, 1, SubmitOptions(wait=False), lambda block: None)
    assert submitter.tasks == 3
