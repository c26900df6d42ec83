"""MapStream through its seam (ChunkSender): windows of whole chunks, one flush per fill, results in order."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from common.errors import RemoteTaskError
from common.wire import TaskResult, TaskSpec
from dispatcher.mapstream import ChunkResults, ChunkSender, MapStream


class FakeSender:
    """Numbers chunks as the executor's batch does; results are given by the test (`resolve`)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[list[TaskSpec], ChunkResults]] = []
        self.flushes = 0
        self.next_index = 0

    def add_chunk(self, specs: list[TaskSpec], slot: ChunkResults) -> None:
        slot.first = self.next_index
        for spec in specs:
            spec.index = self.next_index
            self.next_index += 1
        self.chunks.append((specs, slot))

    def flush(self) -> None:
        self.flushes += 1

    def resolve(self, chunk: int, fail: int | None = None) -> None:
        """Put a result for every task of a chunk: the sum of its arguments, or a failure at index `fail`."""
        specs, slot = self.chunks[chunk]
        for spec in specs:
            ok = spec.index != fail
            value, error = (sum(spec.args), None) if ok else (None, "Boom")
            slot.put(TaskResult(spec.index, spec.task, spec.args, {}, None, ok, value, error, "no", "w", 0.0))


def _stream(sender: ChunkSender, count: int, size: int, window: int) -> MapStream:
    return MapStream(sender, "add", iter([(i, i) for i in range(count)]), size, window, 10_000)


def test_fill_sends_whole_chunks_up_to_the_window_in_one_flush() -> None:
    sender = FakeSender()
    stream = _stream(sender, 10, 3, 7)
    stream.fill()
    assert [[s.args[0] for s in specs] for specs, _slot in sender.chunks] == [[0, 1, 2], [3, 4, 5]]
    assert sender.flushes == 1 and stream.unconsumed == 6 and not stream.exhausted
    stream.fill()  # no room for another whole chunk: nothing sent, nothing flushed
    assert len(sender.chunks) == 2 and sender.flushes == 1


def test_results_come_in_input_order_and_refill_the_window() -> None:
    sender = FakeSender()
    stream = _stream(sender, 10, 3, 6)
    stream.fill()
    results = stream.results(None)
    sender.resolve(1)
    sender.resolve(0)
    assert [next(results) for _ in range(3)] == [0, 2, 4]
    assert len(sender.chunks) == 2  # the first chunk is consumed only when its last value is taken
    assert next(results) == 6
    assert len(sender.chunks) == 3  # consumed: the window had room for the next chunk
    sender.resolve(2)
    assert [next(results) for _ in range(3)] == [8, 10, 12]
    assert len(sender.chunks) == 4
    sender.resolve(3)
    assert list(results) == [14, 16, 18]
    assert [len(specs) for specs, _slot in sender.chunks] == [3, 3, 3, 1] and stream.exhausted


def test_a_failed_task_raises_and_cancels_the_chunks_after_it() -> None:
    sender = FakeSender()
    stream = _stream(sender, 6, 2, 6)
    stream.fill()
    results = stream.results(None)
    sender.resolve(0, fail=1)
    assert next(results) == 0
    with pytest.raises(RemoteTaskError):
        next(results)
    later = sender.chunks[1][1].future
    assert later.cancelled()
    with pytest.raises(CancelledError):
        later.result(0)


def test_arguments_json_cannot_carry_are_refused_before_anything_is_sent() -> None:
    sender = FakeSender()
    stream = MapStream(sender, "add", iter([(1, 2), (object(), 3)]), 2, 4, 10_000)
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        stream.fill()
    assert sender.chunks == [] and sender.flushes == 0
