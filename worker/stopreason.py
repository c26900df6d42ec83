"""Why a worker's work loop ended, for its stop line: a signal, an empty queue in burst mode, an error."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager


class StopReason:
    """Collects what ended a worker: the signals it received and the error RQ's loop quit on."""

    def __init__(self) -> None:
        self._signal: str | None = None
        self._cold = False
        self.error: str | None = None
        """The error that ended the worker, if one did."""

    def signalled(self, signum: int, cold: bool = False) -> None:
        """A stop signal arrived (a second one means a cold shutdown)."""
        self._signal = signal.Signals(signum).name
        self._cold = self._cold or cold

    def failed(self, exc: BaseException) -> None:
        """The worker ends because of this exception."""
        self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    @contextmanager
    def watching(self, rq_log: logging.Logger) -> Iterator[None]:
        """Note the error RQ's work loop quits on: it logs it and returns as if it had finished."""
        watcher = _QuitWatcher(self)
        rq_log.addFilter(watcher)
        try:
            yield
        finally:
            rq_log.removeFilter(watcher)

    def describe(self, burst: bool) -> str:
        """One phrase for the stop line."""
        if self._cold:
            return f"{self._signal} received twice: cold shutdown (a chunk in hand runs again on another worker)"
        if self.error is not None:
            return f"error: {self.error}"
        if self._signal is not None:
            return f"{self._signal} received: warm shutdown"
        if burst:
            return "burst done, queues empty"
        return "the work loop ended"


class _QuitWatcher(logging.Filter):
    """A filter that lets every record through and notes RQ's "... quitting" errors."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__()
        self._reason = reason

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "quitting" in str(record.msg):
            if record.exc_info and record.exc_info[1] is not None:
                self._reason.failed(record.exc_info[1])
            else:
                self._reason.error = record.getMessage()
        return True
