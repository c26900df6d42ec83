"""Argument checks: whether a task's arguments (JSON values) fit its signature and type hints."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from common.errors import InvalidArguments


def check_arguments(
    task: str, signature: inspect.Signature, hints: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Raise InvalidArguments unless args and kwargs fit `signature` and its type `hints` (the full
    check, which TaskDefinition.check_arguments skips when its fast types suffice)."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidArguments(f"{task}{render_signature(signature)}: {exc}") from None
    for name, value in bound.arguments.items():
        parameter = signature.parameters[name]
        hint = hints.get(name)
        if hint is None:
            continue
        values = value if parameter.kind is inspect.Parameter.VAR_POSITIONAL else (value,)
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            values = tuple(value.values())
        for item in values:
            if not matches(item, hint):
                raise InvalidArguments(
                    f"{task}: argument {name!r} must be {describe(hint)}, got {describe_value(item)}"
                )


_JSON_TYPES = (int, float, str, bool, type(None), list, dict)


def fast_types(signature: inspect.Signature, hints: dict[str, Any]) -> tuple[tuple[frozenset[type], ...] | None, int]:
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
        allowed.append(frozenset(t for t in _JSON_TYPES if hint is None or matches(_SAMPLES[t], hint)))
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


def matches(value: Any, hint: Any) -> bool:
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
        return any(matches(value, option) for option in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, dict):
        return isinstance(value, list if origin is tuple else origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # annotations we cannot check are not enforced


def render_signature(signature: inspect.Signature) -> str:
    """The parameter list as Python writes it (`(a, /, b=2, *, c)`), without annotations."""
    bare = [parameter.replace(annotation=parameter.empty) for parameter in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=signature.empty))


def describe(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def describe_value(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
