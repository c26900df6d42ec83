"""A TaskSpec from a Python call's arguments, refused before anything is sent if JSON cannot carry them."""

from __future__ import annotations

import math
from typing import Any

from common.errors import LimitExceeded
from common.wire import TaskSpec, encode_value

_BIG_INT = 2**63
_PLAIN_TYPES = frozenset({str, bool, type(None)})


def plain_arguments(args: tuple[Any, ...], limit: int) -> bool:
    """True for scalar arguments that JSON surely carries within `limit` bytes (no encoding needed)."""
    text = 0
    for value in args:
        kind = type(value)
        if kind is int:
            if not -_BIG_INT < value < _BIG_INT:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind is str:
            text += len(value)
        elif kind not in _PLAIN_TYPES:
            return False
    return text * 6 + 24 * len(args) <= limit


def task_spec(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], max_arg_bytes: int) -> TaskSpec:
    """A task spec with its index unset; refuses arguments JSON cannot carry, before anything is sent."""
    if not kwargs and plain_arguments(args, max_arg_bytes):
        return TaskSpec(-1, name, list(args), {}, None)
    try:
        encoded = encode_value([args, kwargs])
    except (TypeError, ValueError) as exc:
        raise TypeError(f"arguments of task {name!r} cannot be sent as JSON: {exc}") from None
    if len(encoded) > max_arg_bytes // 4 and len(encoded.encode()) > max_arg_bytes:
        raise LimitExceeded(f"arguments of task {name!r} are over the {max_arg_bytes}-byte limit")
    return TaskSpec(-1, name, list(args), kwargs, None)
