"""The task catalogue: tasks registered by name; workers run nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import math
import re
import threading
import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from common.errors import ConfigurationError, InvalidArguments, UnknownTask
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
    have exact types); None when the signature needs the full check. Saves ~5 us of bind() per task."""
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
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}{_render_signature(self.signature)}: {exc}") from None
        for name, value in bound.arguments.items():
            parameter = self.signature.parameters[name]
            hint = self.hints.get(name)
            if hint is None:
                continue
            values = value if parameter.kind is inspect.Parameter.VAR_POSITIONAL else (value,)
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                values = tuple(value.values())
            for item in values:
                if not _matches(item, hint):
                    raise InvalidArguments(
                        f"{self.name}: argument {name!r} must be {_describe(hint)}, got {_describe_value(item)}"
                    )


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
            fast_types, min_args = _fast_types(signature, hints)
            func: Callable[..., Any] = target
            coroutine = None
            if inspect.iscoroutinefunction(target):
                func, coroutine = run_to_completion(target), target
            self._tasks[task_name] = TaskDefinition(
                task_name, func, signature, hints, fast_types, min_args, coroutine, retry, timeout
            )  # fmt: skip
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


class _ThreadLoop:
    """An event loop owned by one thread, closed when the thread ends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        self.loop.close()


_loops = threading.local()


def run_to_completion(coroutine: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A plain function that runs `coroutine` to its end, on an event loop kept per thread (a new loop
    per call would cost far more than a small task): how coroutine tasks run outside async slots."""

    @functools.wraps(coroutine)
    def run(*args: Any, **kwargs: Any) -> Any:
        owner: _ThreadLoop | None = getattr(_loops, "owner", None)
        if owner is None:
            owner = _loops.owner = _ThreadLoop()
        loop = owner.loop
        future = asyncio.ensure_future(coroutine(*args, **kwargs), loop=loop)
        try:
            return loop.run_until_complete(future)
        except BaseException:
            # Stopped from outside (the per-task watchdog's alarm, a shutdown): end the coroutine too,
            # so it never resumes inside a later task.
            if not future.done():
                future.cancel()
                loop.run_until_complete(asyncio.wait([future]))
            raise

    return run


_JSON_TYPES = (int, float, str, bool, type(None), list, dict)


def _fast_types(signature: inspect.Signature, hints: dict[str, Any]) -> tuple[tuple[frozenset[type], ...] | None, int]:
    """For a signature of plain positional parameters: the JSON types each accepts, and the required count."""
    allowed: list[frozenset[type]] = []
    required = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is not parameter.empty:
            continue
        if parameter.kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            return None, 0
        hint = hints.get(parameter.name)
        if _depends_on_value(hint):
            return None, 0
        allowed.append(frozenset(t for t in _JSON_TYPES if hint is None or _matches(_SAMPLES[t], hint)))
        if parameter.default is parameter.empty:
            required = len(allowed)
    return tuple(allowed), required


def _depends_on_value(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    return (origin is typing.Union or origin is types.UnionType) and any(
        _depends_on_value(option) for option in typing.get_args(hint)
    )


_SAMPLES: dict[type, Any] = {int: 1, float: 1.5, str: "", bool: True, type(None): None, list: [], dict: {}}
"""One value of each JSON type, to ask `_matches` which types a hint accepts."""


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any or hint is object:
        return True
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_matches(value, option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, dict):
        return isinstance(value, list if origin is tuple else origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # annotations we cannot check are not enforced


def _origin(func: Callable[..., Any]) -> str:
    """Where a function is defined, as `module.qualname`."""
    return f"{func.__module__}.{getattr(func, '__qualname__', func.__name__)}"


def _render_signature(signature: inspect.Signature) -> str:
    """The parameter list as Python writes it (`(a, /, b=2, *, c)`), without annotations."""
    bare = [parameter.replace(annotation=parameter.empty) for parameter in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=signature.empty))


def _describe(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _describe_value(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
