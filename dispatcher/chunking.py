"""Decide how many tasks go in one RQ job, group tasks into chunks of one route each, and say where
a chunk's tasks sit in its batch."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from common.routing import route_of
from common.wire import TaskSpec
from dispatcher.lines import InputIdle

MAX_CHUNK_SIZE = 1000
"""Largest automatic chunk: big enough that RQ's per-job cost vanishes, small enough to spread work."""
CHUNKS_PER_PROCESS = 8
"""Chunks each worker process should get at least, so faster processes can take more (balance)."""
CHUNKS_PER_THREADED_PROCESS = 1
"""The same for processes with task slots (threads or async): they balance tasks inside a chunk,
while each chunk boundary idles every slot for the chunk's tail, RQ's bookkeeping and a dequeue.
Balance between processes barely suffers: the chunks still sit in one queue, and a free process
takes the next. Figures in docs/performance.md ("One chunk per process with task slots")."""
MIN_CHUNK_SIZE = 250
"""Smallest automatic chunk while the batch still has MIN_CHUNKS_PER_PROCESS chunks of it for every
process: a chunk job costs the worker as much as hundreds of the cheapest tasks, so smaller chunks
(8 chunks per process made chunks of 31 tasks for 200 processes) spend more on jobs than on tasks.
Figures in docs/performance.md ("Chunk size with many processes")."""
MIN_CHUNKS_PER_PROCESS = 1
"""Chunks per process that the minimum chunk size may not reduce a batch below."""
LOOKAHEAD = 50_000
"""Tasks read ahead to learn a small batch's size before choosing the chunk size."""


def auto_chunk_size(total: int | None, processes: int, slots: int) -> int:
    """A chunk size for `total` tasks (None: very many) over live worker processes and their task slots.

    A process runs one chunk at a time and its thread slots share that chunk, so a chunk should be
    a multiple of the slots per process, and there should be several chunks per process, but not
    so many that chunks fall below MIN_CHUNK_SIZE while the batch could give each process
    MIN_CHUNKS_PER_PROCESS chunks of that size.
    """
    processes = max(1, processes)
    per_process = max(1, slots // processes)
    if total is None:
        return max(per_process, MAX_CHUNK_SIZE // per_process * per_process)
    per_process_chunks = CHUNKS_PER_PROCESS if per_process == 1 else CHUNKS_PER_THREADED_PROCESS
    waves = max(1, total // (processes * per_process * per_process_chunks))
    floor = min(MIN_CHUNK_SIZE, total // (processes * MIN_CHUNKS_PER_PROCESS)) // per_process * per_process
    return max(1, min(MAX_CHUNK_SIZE, max(per_process * waves, floor)))


def peek_total(
    items: Iterable[object], limit: int = LOOKAHEAD, live: bool = False
) -> tuple[int | None, Iterator[object]]:
    """Read up to `limit` items ahead: (their count if the input ended there, else None; all the items).

    On a `live` input, an INPUT_IDLE ends the look-ahead: the total is not known yet, and what the
    producer sent so far must not wait for more."""
    total, _, iterator = peek_ahead(items, limit, live)
    return total, iterator


def peek_ahead(
    items: Iterable[object], limit: int = LOOKAHEAD, live: bool = False
) -> tuple[int | None, int, Iterator[object]]:
    """peek_total, also saying how many items it read ahead (INPUT_IDLE markers not counted): a
    live input's look-ahead can end well before `limit`."""
    iterator = iter(items)
    if not live:
        head = list(itertools.islice(iterator, limit))
        if len(head) < limit:
            return len(head), len(head), iter(head)
        return None, len(head), itertools.chain(head, iterator)
    head = []
    for item in iterator:
        head.append(item)
        if isinstance(item, InputIdle):
            return None, len(head) - 1, itertools.chain(head, iterator)
        if len(head) >= limit:
            return None, len(head), itertools.chain(head, iterator)
    return len(head), len(head), iter(head)


def cut_by_route(tasks: list[TaskSpec], size: int) -> Iterator[list[TaskSpec]]:
    """Chunks of up to `size` consecutive tasks, cut also wherever the route changes, so that each
    chunk holds at most one task name outside the built-in catalogue (common.routing)."""
    chunk: list[TaskSpec] = []
    route = None
    for spec in tasks:
        spec_route = route_of(spec.task)
        if chunk and (len(chunk) >= size or spec_route != route):
            yield chunk
            chunk = []
        chunk.append(spec)
        route = spec_route
    if chunk:
        yield chunk


Pending = list[tuple[bool, list[TaskSpec]]]
"""Tasks queued by an executor, in order: (loose, tasks) for each submit (loose) or map() chunk."""


def group_pending(pending: Pending, size: int) -> Iterator[list[TaskSpec]]:
    """Chunks to enqueue: map's chunks as they are, runs of submitted tasks grouped up to `size`, one
    route per chunk."""
    for loose, run in itertools.groupby(pending, key=lambda entry: entry[0]):
        if not loose:
            for _loose, specs in run:
                yield specs
            continue
        specs = sorted((spec for _loose, group in run for spec in group), key=lambda spec: spec.index)
        yield from cut_by_route(specs, size)


def order_by_route(pending: Pending) -> list[tuple[int, int]]:
    """Renumber each run of pending submits within the run's own indices so that the tasks of one
    route follow each other (a chunk holds one route and a contiguous index range; `group_pending`
    cuts the run in index order). Returns (old index, new index) of each task renumbered."""
    moves: list[tuple[int, int]] = []
    for loose, run in itertools.groupby(pending, key=lambda entry: entry[0]):
        if not loose:
            continue
        specs = [spec for _loose, group in run for spec in group]
        routes = list(dict.fromkeys(route_of(spec.task) for spec in specs))
        if len(routes) < 2:
            continue
        indices = sorted(spec.index for spec in specs)
        order = sorted(specs, key=lambda spec: (routes.index(route_of(spec.task)), spec.index))
        for spec, index in zip(order, indices, strict=True):
            moves.append((spec.index, index))
            spec.index = index
    return moves


@dataclass(slots=True)
class ChunkSpan:
    """Where a chunk's tasks sit in the batch, and how many of them have a result."""

    first: int
    last: int
    size: int
    done: int = 0
