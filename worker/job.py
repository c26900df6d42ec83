"""The RQ job class workers run: only our chunk function, refused before anything of a job runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import keys
from common.errors import RefusedJob
from common.jobs import InertJob
from worker.chunk import run_chunk
from worker.lean import LeanPerform


class SafeJob(LeanPerform, InertJob):
    """An InertJob whose only runnable function is `worker.chunk.run_chunk`.

    RQ resolves a job's function by importing whatever dotted path it finds in Redis, so anyone who
    can write to Redis could run code on every worker. Overriding `func` (which `Job._execute`
    calls) makes a refused job fail through RQ's normal failure path: the worker records the
    reason and keeps serving.
    """

    @property
    def func(self) -> Callable[..., Any]:
        name = self.func_name
        if self.refusal:
            raise RefusedJob(self.refusal)
        if name != keys.CHUNK_FUNCTION:
            raise RefusedJob(f"job function {name!r} is not {keys.CHUNK_FUNCTION}; refused, nothing was run")
        if self.instance is not None:
            raise RefusedJob("jobs bound to an instance are refused; nothing was run")
        return run_chunk
