"""What a worker process runs with: its catalogue, settings, name and slots, set once at start."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from common import Settings, default_catalogue
from common.catalogue import Catalogue
from common.errors import ConfigurationError


@dataclass
class Runtime:
    """The per-process state the chunk job function needs (RQ passes it only the payload)."""

    settings: Settings
    catalogue: Catalogue
    name: str = "worker"
    threads: int = 1
    log_tasks: bool = False
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pool(self) -> ThreadPoolExecutor | None:
        """The thread pool that runs a chunk's tasks side by side, when threads > 1."""
        if self.threads <= 1:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = _started_pool(self.threads)
            return self._pool


def _started_pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool whose threads all exist already: ThreadPoolExecutor starts them one per submit,
    which made a worker's first chunk of slow tasks start its slots one by one (~0.1 ms each)."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="task")
    barrier = threading.Barrier(threads + 1)
    for _ in range(threads):
        pool.submit(barrier.wait)
    barrier.wait()
    return pool


_current: Runtime | None = None


def configure(runtime: Runtime) -> None:
    """Install the runtime of this process (called once by the worker at start)."""
    global _current
    _current = runtime


def current() -> Runtime:
    """This process's runtime; a default one (built-in tasks, settings from the environment) if unset."""
    global _current
    if _current is None:
        _current = Runtime(Settings.from_env(), default_catalogue)
    return _current


def import_task_modules(modules: list[str]) -> None:
    """Import user task modules so their `@task` functions register in the default catalogue.

    Like `rq worker` and `celery`, the current directory is importable, so `worker --tasks mytasks`
    finds ./mytasks.py even when `worker` runs as an installed script.
    """
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import task module {module!r}: {exc}") from None
