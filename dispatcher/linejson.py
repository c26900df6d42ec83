"""JSON for input lines, in time linear in their length: nesting bounded before parsing, long arrays in one call."""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from typing import Any

from common.wire import MAX_NESTING_DEPTH, encode_value

try:  # the `fast` extra: orjson decodes long lines faster than json
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None  # type: ignore[assignment]

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(set(range(256)) - set(_BRACKETS))
_BRACKET_WEIGHTS = bytes.maketrans(_BRACKETS, b"\x02\x00\x02\x00")
_AS_PARENS = bytes.maketrans(_BRACKETS, b"()()")
_DEPTH_SLICE = 4096
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19


def too_deep(text: str) -> bool:
    """Whether brackets outside JSON strings nest deeper than MAX_NESTING_DEPTH (exact for valid JSON)."""
    if text.count("[") + text.count("{") <= MAX_NESTING_DEPTH:
        return False
    data = text.encode("utf-8", "surrogatepass")
    if b'\\"' in data:
        data = _JSON_STRING.sub(b"", data)
    elif b'"' in data:
        data = b"".join(data.split(b'"')[::2])  # no escaped quote: strings are between every other quote
    parens = data.translate(_AS_PARENS, _NOT_BRACKETS)
    if parens.count(b"(") <= MAX_NESTING_DEPTH:
        return False
    # Removing every innermost pair lowers the depth by one at most: if a few rounds (each at least
    # halving the text, so their cost stays linear) empty it, the depth is at most that many.
    rounds = 0
    while parens and rounds < MAX_NESTING_DEPTH:
        shorter = parens.replace(b"()", b"")
        if len(shorter) * 2 > len(parens):
            break
        parens, rounds = shorter, rounds + 1
    if not parens:
        return False
    return _deeper_than_limit(data.translate(_BRACKET_WEIGHTS, _NOT_BRACKETS))


def _deeper_than_limit(weights: bytes) -> bool:
    """Exact depth check on brackets weighed 2 (opening) and 0 (closing): the depth after each bracket
    is its running sum minus the brackets read. In slices, so that a deep line stops at its first."""
    total = read = 0
    for start in range(0, len(weights), _DEPTH_SLICE):
        piece = weights[start : start + _DEPTH_SLICE]
        depths = map(operator.sub, itertools.accumulate(piece, initial=total), itertools.count(read))
        if max(depths) > MAX_NESTING_DEPTH:
            return True
        total, read = total + sum(piece), read + len(piece)
    return False


def _orjson_exact(text: str) -> bool:
    """Whether orjson reads `text` as json does: it reads integers beyond 64 bits as floats, so a run of
    19 digits sends the text to json."""
    if _orjson is None:
        return False
    data = text.encode("utf-8", "surrogatepass")
    return _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZERO)


def loads_line(line: str) -> Any:
    """A JSON line's value; ValueError as json.loads words it, NaN, Infinity and out-of-range numbers refused."""
    if _orjson_exact(line):
        try:
            return _orjson.loads(line)  # refuses NaN, Infinity and numbers out of range, as we do
        except ValueError:
            pass  # json says what is wrong, and reads what orjson refuses but json allows (lone surrogates)
    return json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)


def loads_array(items: str, count: int, strict: bool = True) -> list[Any] | None:
    """The JSON array of `items` (text between the brackets) if it holds exactly `count` values and is valid."""
    text = f"[{items}]"
    values: Any = None
    if _orjson_exact(text):
        try:
            values = _orjson.loads(text)
        except ValueError:
            values = None
    if values is None:
        try:
            values = json.loads(text, strict=strict, parse_constant=_no_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):  # RecursionError: brackets in words (too_deep has not run)
            return None
    return values if type(values) is list and len(values) == count else None


def size_over(value: Any, limit: int) -> int | None:
    """The size of `value`'s compact JSON (as the executor measures arguments) if over `limit`, else None."""
    if _orjson is not None:
        try:
            size = len(_orjson.dumps(value))
        except TypeError:  # an integer beyond 64 bits
            pass
        else:  # json writes a float at most a quarter longer than orjson does (1e-07 for 1e-7)
            if size + size // 4 <= limit:
                return None
    size = len(encode_value(value).encode("utf-8", "surrogatepass"))
    return size if size > limit else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value
