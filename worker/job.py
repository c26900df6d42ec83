"""The RQ job class workers run: only our chunk function, refused before anything of a job runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import keys
from common.errors import RefusedJob
from common.jobs import InertJob
from worker.chunk import run_chunk
from worker.lean_job import LeanJob


class SafeJob(LeanJob, InertJob):
    """An InertJob whose only runnable function is `worker.chunk.run_chunk`.

    RQ resolves a job's function by importing whatever dotted path it finds in Redis, so anyone who
    can write to Redis could run code on every worker. Overriding `func` (which `Job._execute`
    calls) makes a refused job fail through RQ's normal failure path: the worker records the
    reason and keeps serving.
    """

    @property
    def func(self) -> Callable[..., Any]:
        if self.refusal is None:
            name = self.func_name
            if name != keys.CHUNK_FUNCTION:
                self.refusal = f"job function {name!r} is not {keys.CHUNK_FUNCTION}; refused, nothing was run"
            elif self.instance is not None:
                self.refusal = "jobs bound to an instance are refused; nothing was run"
        if self.refusal is not None:
            raise RefusedJob(self.refusal)
        return run_chunk

    @property
    def should_retry(self) -> bool:
        """RQ's retry policy, except for a refused job: running it again would refuse it again."""
        return self.refusal is None and bool(super().should_retry)
