"""Run one task in a forked child process, so that a thread slot can stop it at its time limit.

A thread cannot be stopped from outside, and SIGALRM reaches only the main thread, so a task
with a limit of its own (`@task(timeout=S)`) that runs on a thread slot runs in a child forked
from that slot instead: the slot waits for the child's answer on a pipe and kills the child
(SIGKILL) when the limit passes. Only the arguments (already in memory) cross the fork; the
answer comes back as JSON, like every result. The child also arms an alarm of its own, so it ends
even if its worker dies first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from common.catalogue import TaskDefinition
from common.errors import TaskTimeout
from common.wire import JSONValue, encode_value

EXIT_NO_ANSWER = 70
"""A child that could not even write its answer exits with this code."""
READ_BYTES = 65536


class ChildFailed(Exception):
    """The task raised in its child process: the error as the child described it."""

    def __init__(self, error_type: str, message: str, traceback: str | None, retryable: bool) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.retryable = retryable
        """Whether the error is of one of the task's `retry_on` types (the parent has no instance of it)."""


def call_in_child(
    definition: TaskDefinition,
    args: list[JSONValue],
    kwargs: dict[str, JSONValue],
    describe: Callable[[BaseException], str],
) -> JSONValue:
    """The task's value, computed in a child process; TaskTimeout when the child overruns the task's
    limit (and is killed), ChildFailed when the task raised, RuntimeError when the child died."""
    limit = definition.timeout
    assert limit is not None
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12 warns on any fork of a process with threads; the child here runs only the task
        # (no lock of the worker's is taken in it), and its limit ends it even if the task deadlocks.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which never returns
        try:
            os.close(read_end)
            _answer(definition, args, kwargs, describe, write_end, limit)
        finally:
            os._exit(EXIT_NO_ANSWER)
    os.close(write_end)
    try:
        answer = _read_until(read_end, time.monotonic() + limit)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_end)
    if answer is None:
        _kill(pid)
        raise TaskTimeout(f"task ran longer than {limit:g} s and was stopped")
    _, status = os.waitpid(pid, 0)
    if not answer:
        raise RuntimeError(f"the task's process ended without an answer ({_describe_status(status)})")
    reply = json.loads(answer)
    if reply[0] == 1:
        return reply[1]
    raise ChildFailed(reply[1], reply[2], reply[3], bool(reply[4]))


def _answer(
    definition: TaskDefinition,
    args: list[JSONValue],
    kwargs: dict[str, JSONValue],
    describe: Callable[[BaseException], str],
    out: int,
    limit: float,
) -> None:  # pragma: no cover - runs in the child
    """In the child: run the task, write its answer to `out`, exit."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(signum, signal.SIG_DFL)
    signal.alarm(math.ceil(limit) + 1)  # ends the child if its parent is gone before it could kill it
    reply: list[Any]
    value: Any
    try:
        if definition.coroutine is not None:  # a loop of its own: the thread's loop shares its epoll with the parent
            value = asyncio.run(definition.coroutine(*args, **kwargs))  # type: ignore[arg-type]
        else:
            value = definition.func(*args, **kwargs)
        reply = [1, value]
    except Exception as exc:
        retryable = definition.retry is not None and isinstance(exc, definition.retry.retry_on)
        reply = [0, type(exc).__name__, str(exc) or type(exc).__name__, describe(exc), retryable]
    try:
        data = encode_value(reply).encode()
    except (TypeError, ValueError) as exc:
        data = encode_value([0, "TypeError", f"result cannot be sent as JSON: {exc}", None, False]).encode()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]
    os._exit(0)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to `fd` until its writer closes it; None if the deadline passes first."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    parts: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if not poller.poll(math.ceil(remaining * 1000)):
            continue
        part = os.read(fd, READ_BYTES)
        if not part:
            return b"".join(parts)
        parts.append(part)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
