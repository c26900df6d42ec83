"""The task catalogue: tasks registered by name; workers run nothing else."""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from common.argcheck import check_arguments, fast_types
from common.coroutines import run_to_completion
from common.errors import ConfigurationError, UnknownTask
from common.retry import DEFAULT_BACKOFF, DEFAULT_MAX_BACKOFF, Jitter, RetryPolicy, normalize_retry_on

F = TypeVar("F", bound=Callable[..., Any])

TASK_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
"""Task names: identifiers, optionally namespaced with dots (`images.resize`)."""


@dataclass(frozen=True)
class TaskDefinition:
    """A registered task: its name, its function and what its signature accepts."""

    name: str
    func: Callable[..., Any]
    signature: inspect.Signature
    hints: dict[str, Any]
    fast_types: tuple[frozenset[type], ...] | None = None
    """Per positional parameter, the exact argument types that certainly pass its hint (JSON values
    have exact types); None when the signature needs the full check (Signature.bind, far slower)."""
    min_args: int = 0
    coroutine: Callable[..., Awaitable[Any]] | None = None
    """The task's `async def` form, which a worker with async slots awaits on its event loop; `func`
    then runs the same task to completion on its own (in any worker mode)."""
    retry: RetryPolicy | None = None
    """When and how often a failed run is tried again (`@task(retries=...)`); None: never."""
    timeout: float | None = None
    """Seconds one run may take (`@task(timeout=...)`), instead of the worker's --task-timeout."""

    @property
    def plain(self) -> bool:
        """No retries and no time limit of its own: the worker's quick paths may run it."""
        return self.retry is None and self.timeout is None

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise InvalidArguments unless args and kwargs fit the signature and its type hints."""
        fast = self.fast_types
        if fast is not None and not kwargs and self.min_args <= len(args) <= len(fast):
            for value, allowed in zip(args, fast, strict=False):
                if type(value) not in allowed:
                    break
            else:
                return
        check_arguments(self.name, self.signature, self.hints, args, kwargs)


class Catalogue:
    """A registry of tasks keyed by name; registering a name twice is an error."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self.retrying = False
        """Whether any task here declares retries (workers skip retry bookkeeping when none does)."""

    @overload
    def register(self, func: F, *, name: str | None = None, **options: Any) -> F: ...

    @overload
    def register(self, func: None = None, *, name: str | None = None, **options: Any) -> Callable[[F], F]: ...

    def register(self, func: F | None = None, *, name: str | None = None, **options: Any) -> F | Callable[[F], F]:
        """Register `func` under `name` (default: its own name); usable as `@register` or `@register(name=)`.

        `options` are those of `task_options` (retries, retry_on, backoff, max_backoff, jitter, timeout).
        """

        def decorate(target: F) -> F:
            task_name = name or target.__name__
            if not TASK_NAME_PATTERN.match(task_name):
                raise ConfigurationError(f"invalid task name {task_name!r}")
            try:
                retry, timeout = task_options(**options)
            except (ConfigurationError, TypeError) as exc:  # TypeError: an unknown option
                raise ConfigurationError(f"task {task_name!r} ({_origin(target)}): {exc}") from None
            if task_name in self._tasks:
                first = _origin(self._tasks[task_name].func)
                raise ConfigurationError(
                    f"task {task_name!r} is already registered by {first}; {_origin(target)} registers it again"
                )
            try:
                hints = typing.get_type_hints(target)
            except Exception:  # unresolvable annotations: validate arity only
                hints = {}
            hints.pop("return", None)
            signature = inspect.signature(target)
            fast, min_args = fast_types(signature, hints)
            func: Callable[..., Any] = target
            coroutine = None
            if inspect.iscoroutinefunction(target):
                func, coroutine = run_to_completion(target), target
            self._tasks[task_name] = TaskDefinition(
                task_name, func, signature, hints, fast, min_args, coroutine, retry, timeout
            )
            self.retrying = self.retrying or retry is not None
            return target

        return decorate(func) if func is not None else decorate

    def add_coroutine(self, name: str, coroutine: Callable[..., Awaitable[Any]]) -> None:
        """Give the registered task `name` an `async def` form taking the same arguments, for async slots."""
        definition = self.get(name)
        if not inspect.iscoroutinefunction(coroutine):
            raise ConfigurationError(f"the async form of task {name!r} must be an async def function")
        if list(inspect.signature(coroutine).parameters) != list(definition.signature.parameters):
            raise ConfigurationError(f"the async form of task {name!r} must take the same parameters")
        self._tasks[name] = dataclasses.replace(definition, coroutine=coroutine)

    def get(self, name: str) -> TaskDefinition:
        """The task called `name`; UnknownTask (listing what exists) if there is none."""
        try:
            return self._tasks[name]
        except (KeyError, TypeError):
            offered = ", ".join(sorted(self._tasks)[:40])
            raise UnknownTask(f"unknown task {name!r}; this worker offers: {offered}") from None

    def modules(self) -> set[str]:
        """The modules that define the registered tasks' functions."""
        return {definition.func.__module__ for definition in self._tasks.values()}

    def names(self) -> list[str]:
        """Sorted names of every registered task."""
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)


default_catalogue = Catalogue()
"""The catalogue that `@task` registers into and that workers serve by default."""


RetryOn = type[BaseException] | tuple[type[BaseException], ...]


def task_options(
    *,
    retries: int = 0,
    retry_on: RetryOn | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    jitter: Jitter | None = None,
    timeout: float | None = None,
) -> tuple[RetryPolicy | None, float | None]:
    """Check a task's options: its retry policy (None without retries) and its time limit."""
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf
    ):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be an integer >= 0, got {retries!r}")
    if retries == 0:
        options = {"retry_on": retry_on, "backoff": backoff, "max_backoff": max_backoff, "jitter": jitter}
        given = [option for option, value in options.items() if value is not None]
        if given:
            raise ConfigurationError(f"{', '.join(given)} without retries has no effect (set retries=N)")
        return None, timeout
    policy = RetryPolicy(
        retries,
        normalize_retry_on(retry_on),
        min(DEFAULT_BACKOFF, max_backoff or DEFAULT_BACKOFF) if backoff is None else backoff,
        DEFAULT_MAX_BACKOFF if max_backoff is None else max_backoff,
        "full" if jitter is None else jitter,
    )
    return policy, timeout


@overload
def task(
    func: F,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: RetryOn | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    jitter: Jitter | None = None,
    timeout: float | None = None,
) -> F: ...


@overload
def task(
    func: None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: RetryOn | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    jitter: Jitter | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...


def task(
    func: F | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_on: RetryOn | None = None,
    backoff: float | None = None,
    max_backoff: float | None = None,
    jitter: Jitter | None = None,
    timeout: float | None = None,
) -> F | Callable[[F], F]:
    """Register a function as a task in the default catalogue: `@task` or `@task(name="ns.name", ...)`.

    `retries=N` runs a task that raised one of `retry_on` (default: any Exception) up to N more
    times, `backoff` seconds after the first failure, doubling up to `max_backoff`, jittered
    (`jitter`: "full", "decorrelated" or "none"). `timeout=S` limits each run to S seconds
    instead of the worker's --task-timeout. Invalid options raise ConfigurationError at once.
    """
    options: dict[str, Any] = {"retries": retries, "retry_on": retry_on, "backoff": backoff, "jitter": jitter}
    decorate: Callable[[F], F] = default_catalogue.register(
        name=name, max_backoff=max_backoff, timeout=timeout, **options
    )
    return decorate if func is None else decorate(func)


def _origin(func: Callable[..., Any]) -> str:
    """Where a function is defined, as `module.qualname`."""
    return f"{func.__module__}.{getattr(func, '__qualname__', func.__name__)}"
