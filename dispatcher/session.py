"""A long-lived open batch for latency-sensitive use: submit one task, await its result, repeat."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import redis
from redis.client import Pipeline

from common.direct import DirectConnection
from common.errors import WaitTimeout
from common.settings import Settings
from common.wire import JSONValue, TaskResult, TaskSpec
from dispatcher.chunking import ChunkSpan
from dispatcher.submit import BatchSubmitter, new_batch_id
from dispatcher.watch import BLOCK_MS, READ_COUNT, BatchWatcher


class Session:
    """One open batch on one connection: every `submit` is a chunk of one task, sent in one round trip.

    This is the same submit and await path as `dispatcher submit` (same batch keys, same RQ jobs,
    same result stream), with chunk size 1 and no per-call setup, so one `call` costs the dispatcher
    one round trip: the enqueue script and the blocking read that returns with the result.
    """

    def __init__(self, client: redis.Redis, settings: Settings, batch_id: str | None = None) -> None:
        self.batch_id = batch_id or new_batch_id()
        self._submitter = BatchSubmitter(client, settings, self.batch_id, chunk_size=1)
        self._watcher = BatchWatcher(client, settings, self.batch_id)
        self._direct = DirectConnection(client)
        self._arrived: dict[int, TaskResult] = {}
        self._started = False
        self._closed = False

    def submit(
        self,
        task: str,
        args: list[JSONValue] | None = None,
        kwargs: dict[str, JSONValue] | None = None,
        task_id: str | None = None,
    ) -> int:
        """Enqueue one task now; returns its index in the session's batch (the key for `result`)."""
        index = self._add(task, args, kwargs, task_id)
        self._submitter.flush()
        return index

    def _add(
        self, task: str, args: list[JSONValue] | None, kwargs: dict[str, JSONValue] | None, task_id: str | None
    ) -> int:
        """Queue one task as a chunk of its own, not sent yet."""
        if self._closed:
            raise RuntimeError("session is closed")
        if not self._started:
            self._submitter.start("session")
            self._started = True
        spec = TaskSpec(self._submitter.tasks, task, list(args or []), dict(kwargs or {}), task_id)
        self._submitter.add_chunk([spec], auto_flush=False)
        self._watcher.add_chunk(ChunkSpan(spec.index, spec.index, 1))
        return spec.index

    def result(self, index: int, timeout: float | None = None) -> TaskResult:
        """Block until task `index` has its result (WaitTimeout after `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while index not in self._arrived:
            block = BLOCK_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"no result for task {index} of batch {self.batch_id} within {timeout} s")
                block = max(1, min(BLOCK_MS, int(left * 1000)))
            for result in self._watcher.poll(block):
                self._arrived[result.index] = result
            for result in self._watcher.check_stalled():
                self._arrived[result.index] = result
        return self._arrived.pop(index)

    def call(self, task: str, *args: JSONValue, timeout: float | None = None, **kwargs: JSONValue) -> TaskResult:
        """Submit one task and wait for its result.

        The enqueue and the first blocking read of the result go to Redis in one round trip: Redis
        runs the enqueue script, then blocks the read until the worker has published the result.
        """
        index = self._add(task, list(args), kwargs, None)
        block = BLOCK_MS if timeout is None else max(1, min(BLOCK_MS, int(timeout * 1000)))
        deadline = None if timeout is None else time.monotonic() + timeout
        for result in self._watcher.absorb(self._send_and_read(block)):
            self._arrived[result.index] = result
        if index in self._arrived:
            return self._arrived.pop(index)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.result(index, left)

    def _send_and_read(self, block: int) -> Any:
        """Send the pending chunk and an XREAD BLOCK of the result stream in one round trip, on the
        session's own connection; the XREAD reply as the client would return it."""
        watcher = self._watcher
        xread = ["XREAD", "COUNT", READ_COUNT, "BLOCK", block, "STREAMS", watcher.stream, watcher.last_id]
        calls = [self._submitter.as_text(call) for call in self._submitter.pending_calls()]
        wait = self._submitter.replica_wait if calls else None
        if wait is not None:  # the durable option: the replicas confirm the enqueue before the read
            calls.append(wait.command)
        try:
            replies = self._direct.round_trip([*calls, xread])
        except (redis.ConnectionError, redis.TimeoutError):
            # The client's own path, with its retries. If the lost reply hid a done enqueue, the
            # chunk is queued twice and may run twice; its result still counts once.
            def read(pipe: Pipeline) -> None:
                pipe.xread({watcher.stream: watcher.last_id}, count=READ_COUNT, block=block)

            (reply,) = self._submitter.flush(after=read)
            return reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        if wait is not None:
            wait.check(replies[-2], f"batch {self.batch_id}: chunk jobs enqueued")
        self._submitter.mark_sent()
        return self._direct.parse("XREAD", replies[-1])

    def close(self) -> None:
        """Mark the batch fully submitted, so `dispatcher status` and reattaching readers see its total."""
        if self._started and not self._closed:
            self._submitter.finish()
        self._closed = True
        self._direct.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @property
    def submitted(self) -> int:
        """How many tasks this session has submitted."""
        return self._submitter.tasks

    def __repr__(self) -> str:
        return f"Session(batch_id={self.batch_id!r}, submitted={self.submitted})"
