"""The wire format of a chunk of tasks (one RQ job's argument), and what both formats share."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.errors import PayloadError

WIRE_VERSION = 1
"""Version of both formats (chunks here, results in common.wire_results); a reader refuses versions
it does not know."""

MAX_NESTING_DEPTH = 100
"""Deepest bracket nesting of a JSON input line (the line's own object is one level): deeper data
would reach the recursion limits of the JSON codecs it passes through (orjson stops at 1024)."""

JSONValue = Any
"""A value that json.dumps accepts (the type system cannot say more without a recursive alias)."""

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def encode_value(value: JSONValue) -> str:
    """Compact JSON for a task value; raises ValueError/TypeError for values JSON cannot carry."""
    return _encode(value)


@dataclass(slots=True)
class TaskSpec:
    """One task of a batch, as the dispatcher read it."""

    index: int
    task: str
    args: list[JSONValue] = field(default_factory=list)
    kwargs: dict[str, JSONValue] = field(default_factory=dict)
    id: str | None = None

    def to_wire(self) -> list[JSONValue]:
        return [self.index, self.id, self.task, self.args, self.kwargs]


TaskRow = list[Any]
"""A task as it travels: [index, id, task, args, kwargs] (checked by decode_chunk)."""


@dataclass(slots=True)
class ChunkPayload:
    """A chunk of tasks as one RQ job carries it."""

    batch_id: str
    chunk: int
    ttl: int
    rows: list[TaskRow]
    """The checked task rows: the worker's hot loop reads them without building a TaskSpec each."""

    @property
    def tasks(self) -> list[TaskSpec]:
        """The tasks as TaskSpec objects (built on demand)."""
        return [TaskSpec(index, name, args, kwargs, task_id) for index, task_id, name, args, kwargs in self.rows]


def encode_chunk(batch_id: str, chunk: int, ttl: int, tasks: Iterable[TaskSpec]) -> dict[str, JSONValue]:
    """The single argument of a chunk job (RQ's JSON serializer encodes it)."""
    rows = [[t.index, t.id, t.task, t.args, t.kwargs] for t in tasks]  # to_wire, inlined: once per task
    return {"v": WIRE_VERSION, "b": batch_id, "c": chunk, "x": ttl, "t": rows}


def decode_chunk(payload: object) -> ChunkPayload:
    """Check and decode a chunk job's argument; PayloadError says exactly what is wrong."""
    if not isinstance(payload, dict):
        raise PayloadError(f"chunk payload must be an object, got {type(payload).__name__}")
    if payload.get("v") != WIRE_VERSION:
        raise PayloadError(f"unsupported chunk wire version {payload.get('v')!r} (this worker reads 1)")
    batch_id, chunk, ttl, raw_tasks = payload.get("b"), payload.get("c"), payload.get("x"), payload.get("t")
    if not isinstance(batch_id, str) or not batch_id:
        raise PayloadError("chunk payload has no batch id")
    if (
        not isinstance(chunk, int)
        or isinstance(chunk, bool)
        or not isinstance(ttl, int)
        or isinstance(ttl, bool)
        or ttl <= 0
    ):
        raise PayloadError("chunk payload has an invalid chunk number or ttl")
    if not isinstance(raw_tasks, list):
        raise PayloadError("chunk payload has no task list")
    for raw in raw_tasks:  # exact type checks: JSON decoders build exact types, and this runs per task
        if type(raw) is not list or len(raw) != 5:
            raise PayloadError("a task on the wire must be [index, id, task, args, kwargs]")
        index, task_id, name, args, kwargs = raw
        if type(index) is not int or index < 0:
            raise PayloadError(f"invalid task index {index!r}")
        if type(name) is not str or type(args) is not list or type(kwargs) is not dict:
            raise PayloadError(f"task {index}: name must be a string, args a list, kwargs an object")
        if task_id is not None and type(task_id) is not str:
            raise PayloadError(f"task {index}: id must be a string or null")
    return ChunkPayload(batch_id, chunk, ttl, raw_tasks)
