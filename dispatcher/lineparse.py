"""Parse one input line into a TaskSpec: text (`TASK ARG ...`, split as shlex would) or a JSON object.

A line that cannot become a task raises LineError, which becomes that line's failed result.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from common.catalogue import TASK_NAME_PATTERN
from common.wire import MAX_NESTING_DEPTH, TaskSpec
from dispatcher.linejson import loads_array, loads_line, size_over, too_deep

JSONL_KEYS = frozenset({"task", "args", "kwargs", "id"})

_PLAIN_LINE = re.compile(r"[^\"'\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
"""A line without quotes or exotic whitespace: str.split() splits it exactly as shlex would."""


class LineError(ValueError):
    """Why a line is not a task; error_type names the failure in its result."""

    def __init__(self, message: str, error_type: str = "MalformedInput") -> None:
        super().__init__(message)
        self.error_type = error_type


_TOKEN = re.compile(r"""\"[^"]*\"|'[^']*'|[^ \t\r\n"'][^ \t\r\n]*|["']""")
"""The words of a text line, as shlex (non-POSIX, split on whitespace) cuts them: a quoted word ends at
its closing quote; a lone quote is an unterminated one. One pass, linear in the line."""


def parse_text(line: str, index: int) -> TaskSpec:
    # Plain lines need no tokenizer. Printable ASCII without quotes is the common case and the cheapest
    # to recognise (three C calls).
    if (line.isascii() and line.isprintable() and '"' not in line and "'" not in line) or _PLAIN_LINE.fullmatch(line):
        if len(line) > _LONG_LINE and (spec := _numbers_line(line, index)) is not None:
            return spec
        name, *words = line.split()
        if name not in _VALID_NAMES:
            check_name(name)
            if len(_VALID_NAMES) < 10_000:
                _VALID_NAMES.add(name)
        if len(words) > _MANY_WORDS:
            return TaskSpec(index, name, many_values(words), {}, None)
        # Plain non-negative integers (most arguments) inline; everything else through _word.
        args = [
            int(w) if w.isdigit() and w.isascii() and (w[0] != "0" or len(w) == 1) and len(w) < 19 else _word(w)
            for w in words
        ]
        return TaskSpec(index, name, args, {}, None)
    tokens = _TOKEN.findall(line)
    if '"' in tokens or "'" in tokens:
        raise LineError("cannot split line into words: No closing quotation")
    name = tokens[0]
    check_name(name)
    args = tokens[1:]
    return TaskSpec(index, name, many_values(args) if len(args) > _MANY_WORDS else list(map(scalar, args)), {}, None)


_VALID_NAMES: set[str] = set()
"""Task names already checked against TASK_NAME_PATTERN (a batch uses few names, many times)."""

_MANY_WORDS = 32
"""Above this many plain words, a line's arguments are read by one json.loads instead of word by word."""

_LONG_LINE = 1024
"""Characters above which a plain line is first tried as a name and numbers separated by single spaces."""


def _numbers_line(line: str, index: int) -> TaskSpec | None:
    """A long plain line of a name and JSON numbers or literals between single spaces, by one JSON decode
    and no word list; None for any other line."""
    name, _, rest = line.partition(" ")
    if "\t" in name or "\t" in rest or "  " in rest or not rest or rest[-1] == " " or "[" in rest or "{" in rest:
        return None
    values = loads_array(rest.replace(" ", ","), rest.count(" ") + 1)
    if values is None:
        return None
    check_name(name)
    return TaskSpec(index, name, values, {}, None)


_INT_DIGITS = 4300
"""Most digits of an integer argument (CPython's default limit for int() of a string)."""

_SCALAR_START = frozenset("-0123456789tfnNI")
"""First characters of the words that may be JSON numbers or literals (_word); others are strings."""


def many_values(tokens: list[str]) -> list[Any]:
    """[scalar(t) for t in tokens], decoded as one JSON array when the tokens allow it: quoted tokens
    and bare words as JSON strings, numbers and literals as they stand. Token by token otherwise
    (a backslash outside double quotes, `-x`, `01`, `NaN`...), which also says which token is wrong."""
    joined = ",".join(tokens)
    values = loads_array(joined, len(tokens)) if '"' not in joined else None  # numbers only: the usual case
    if values is None:
        start = _SCALAR_START
        if '"' not in joined and "'" not in joined:  # bare words only (a plain line)
            text = ",".join([t if t[0] in start else f'"{t}"' for t in tokens]) if "\\" not in joined else None
        elif '"' not in (others := "".join([t for t in tokens if t[0] != '"'])) and "\\" not in others:
            text = ",".join(
                [t if t[0] == '"' or t[0] in start else f'"{t[1:-1]}"' if t[0] == "'" else f'"{t}"' for t in tokens]
            )
            if '\\",' in text or text.endswith('\\"'):  # an escaped closing quote would join two tokens
                text = None
        else:
            text = None
        values = None if text is None else loads_array(text, len(tokens))
    if values is None or (("[" in joined or "{" in joined) and any(type(v) in (list, dict) for v in values)):
        return [scalar(token) for token in tokens]
    return values


def _word(word: str) -> Any:
    """A bare word's value: a JSON number, true, false or null, else the word itself as a string."""
    digits = word[1:] if word[0] == "-" else word
    if digits.isdigit() and digits.isascii() and (digits[0] != "0" or len(digits) == 1):
        if len(digits) > _INT_DIGITS:
            raise LineError(f"an integer of {len(digits)} digits (at most {_INT_DIGITS})")
        return int(word)
    if word[0] in "-0123456789tfnNI":
        try:
            value = json.loads(word)
        except ValueError:
            return word
        if isinstance(value, float) and not math.isfinite(value):
            raise LineError(f"{shown(word)} is not a finite number (JSON has no NaN or Infinity)")
        if isinstance(value, (int, float, bool)) or value is None:
            return value
    return word


_scan_string = json.decoder.scanstring  # type: ignore[attr-defined]


def scalar(token: str) -> Any:
    """A token's value: a JSON string in double quotes, raw text in single quotes, else _word."""
    if token[0] == '"':
        try:
            value, end = _scan_string(token, 1, True)
        except ValueError:
            end = -1
        if end != len(token):
            raise LineError(f"bad quoted string {shown(token)}")
        return value
    if token[0] == "'" and token[-1] == "'" and len(token) >= 2:
        return token[1:-1]
    return _word(token)


def parse_jsonl(line: str, index: int) -> TaskSpec:
    if too_deep(line):
        raise LineError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", "LimitExceeded")
    try:
        obj = loads_line(line)
    except ValueError as exc:
        raise LineError(f"invalid JSON: {shown(str(exc))}") from None
    except RecursionError:  # too_deep is exact for valid JSON; this is for what it cannot judge
        raise LineError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", "LimitExceeded") from None
    if not isinstance(obj, dict):
        raise LineError('each line must be a JSON object like {"task": "add", "args": [1, 2]}')
    unknown = set(obj) - JSONL_KEYS
    if unknown:
        raise LineError(f"unknown keys {shown(str(sorted(unknown)))} (allowed: task, args, kwargs, id)")
    name, args, kwargs, task_id = obj.get("task"), obj.get("args", []), obj.get("kwargs", {}), obj.get("id")
    if not isinstance(name, str):
        raise LineError('"task" must be a string')
    check_name(name)
    if not isinstance(args, list):
        raise LineError('"args" must be a list')
    if not isinstance(kwargs, dict):
        raise LineError('"kwargs" must be an object')
    if (task_id is not None and not isinstance(task_id, (str, int))) or isinstance(task_id, bool):
        raise LineError('"id" must be a string or an integer')
    return TaskSpec(index, name, args, kwargs, None if task_id is None else str(task_id))


def check_name(name: str) -> None:
    if not TASK_NAME_PATTERN.match(name):
        hint = " (JSON lines need --format jsonl)" if name[:1] == "{" else ""
        raise LineError(f"invalid task name {name[:60]!r}{hint}")


def shown(text: str) -> str:
    """Text for an error message: a long token is cut, never echoed whole."""
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def check_size(spec: TaskSpec, limit: int) -> None:
    """Refuse arguments whose compact JSON (as the executor measures it) is over `limit` bytes."""
    size = size_over([spec.args, spec.kwargs], limit)
    if size is not None:
        raise LineError(f"arguments are {size} bytes of JSON, over the {limit}-byte limit", "LimitExceeded")


PARSERS: dict[str, Callable[[str, int], TaskSpec]] = {"text": parse_text, "jsonl": parse_jsonl}
