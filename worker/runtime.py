"""What a worker process runs with: its catalogue, settings, name and slots, set once at start."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field

from common import Settings, default_catalogue
from common.catalogue import Catalogue
from common.errors import ConfigurationError
from worker.slots import SlotContext, Slots


@dataclass
class Runtime:
    """The per-process state the chunk job function needs (RQ passes it only the payload)."""

    settings: Settings
    catalogue: Catalogue
    name: str = "worker"
    threads: int = 1
    log_tasks: bool = False
    async_slots: int = 0
    """Coroutine tasks awaited at once on the process's event loop (0: they run like any other task)."""
    _pool: Slots | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def slots(self) -> int:
        """Tasks this process runs at once, as advertised to dispatchers (which size chunks by it)."""
        return max(self.threads, self.async_slots)

    @property
    def context(self) -> SlotContext:
        """What the slots need of this runtime (they take no more, and never the runtime itself)."""
        return SlotContext(self.catalogue, self.settings, self.name)

    def pool(self) -> Slots | None:
        """The slots that run a chunk's tasks side by side; None when tasks run one at a time."""
        if self.threads <= 1 and self.async_slots <= 0:
            return None
        with self._lock:
            if self._pool is None:
                self._pool = Slots(self.threads, self.async_slots)
            return self._pool


_current: Runtime | None = None


def configure(runtime: Runtime) -> None:
    """Install the runtime of this process (called once by the worker at start)."""
    global _current
    _current = runtime


def reset() -> None:
    """Forget the installed runtime (tests that configure one call this after)."""
    global _current
    _current = None


def current() -> Runtime:
    """This process's runtime; a default one (built-in tasks, settings from the environment) if unset."""
    global _current
    if _current is None:
        _current = Runtime(Settings.from_env(), default_catalogue)
    return _current


def import_task_modules(modules: list[str]) -> list[str]:
    """Import user task modules so their `@task` functions register in the default catalogue; return
    those that registered no task (neither while imported nor earlier, through another module).

    Like `rq worker` and `celery`, the current directory is importable, so `worker --tasks mytasks`
    finds ./mytasks.py even when `worker` runs as an installed script. A task name registered twice
    (by two modules, or by a module and a built-in) is a ConfigurationError naming both.
    """
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    idle = []
    for module in dict.fromkeys(modules):
        before = len(default_catalogue)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import task module {module!r}: {exc}") from None
        except ConfigurationError as exc:
            raise ConfigurationError(f"task module {module!r}: {exc}") from None
        except Exception as exc:  # the module's own code failed: a bad task module (exit 2), said in one line
            raise ConfigurationError(f"cannot import task module {module!r}: {_raised_where(exc)}") from None
        if len(default_catalogue) == before and module not in default_catalogue.modules():
            idle.append(module)
    return idle


def _raised_where(exc: Exception) -> str:
    """`Type: message (file, line N)`: the innermost frame of the module's own code (none for a
    SyntaxError, whose message says where)."""
    machinery = os.path.dirname(importlib.__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)[1:] if not f.filename.startswith(("<", machinery))]
    where = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
