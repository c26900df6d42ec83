"""Read a batch lazily from text lines (`TASK ARG ...`) or JSON lines, one task per line."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from common.catalogue import TASK_NAME_PATTERN
from common.wire import TaskResult, TaskSpec

Format = Literal["text", "jsonl"]

JSONL_KEYS = frozenset({"task", "args", "kwargs", "id"})

_PLAIN_LINE = re.compile(r"[^\"'\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*")
"""A line without quotes or exotic whitespace: str.split() splits it exactly as shlex would."""


@dataclass(slots=True)
class BadInput:
    """A line that could not become a task; it becomes that task's failed result."""

    index: int
    line_no: int
    error_type: str
    message: str

    def to_result(self) -> TaskResult:
        message = f"line {self.line_no}: {self.message}"
        return TaskResult(self.index, "", [], {}, None, False, None, self.error_type, message, "dispatcher", 0.0)


Item = TaskSpec | BadInput


def detect_format(filename: str | None, explicit: str | None) -> Format:
    """The input format: explicit if given, else from the file extension (.jsonl/.ndjson/.json), else text."""
    if explicit in ("text", "jsonl"):
        return explicit  # type: ignore[return-value]
    if filename and filename.lower().endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "text"


_INTEGER_LINE = re.compile(
    r"[ \t]*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)((?:[ \t]+-?(?:0|[1-9][0-9]{0,17}))*)\s*"
)
"""A task name and integer arguments of up to 18 digits (JSON integers; int() reads them exactly):
the lines of most big batches, parsed by one regular expression instead of word by word."""


def read_tasks(lines: Iterable[str], fmt: Format, max_arg_bytes: int) -> Iterator[Item]:
    """Yield one TaskSpec (or BadInput) per non-blank, non-comment line, numbered from index 0."""
    parse = _parse_text if fmt == "text" else _parse_jsonl
    integer_line = _INTEGER_LINE.fullmatch if fmt == "text" else None
    index = 0
    for line_no, line in enumerate(lines, start=1):
        match = integer_line(line) if integer_line is not None and len(line) * 6 <= max_arg_bytes else None
        if match is not None:
            name, words = match.groups()
            yield TaskSpec(index, name, [int(word) for word in words.split()], {}, None)
            index += 1
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            spec = parse(stripped, index)
            if len(stripped) * 6 > max_arg_bytes:
                _check_size(spec, max_arg_bytes)
        except _LineError as exc:
            yield BadInput(index, line_no, exc.error_type, str(exc))
        else:
            yield spec
        index += 1


class _LineError(ValueError):
    def __init__(self, message: str, error_type: str = "MalformedInput") -> None:
        super().__init__(message)
        self.error_type = error_type


def _parse_text(line: str, index: int) -> TaskSpec:
    # shlex reads a character at a time (about 10 us a line); plain lines need none of it. Printable
    # ASCII without quotes is the common case and the cheapest to recognise (three C calls).
    if (line.isascii() and line.isprintable() and '"' not in line and "'" not in line) or _PLAIN_LINE.fullmatch(line):
        name, *words = line.split()
        if name not in _VALID_NAMES:
            _check_name(name)
            if len(_VALID_NAMES) < 10_000:
                _VALID_NAMES.add(name)
        # Plain non-negative integers (most arguments) inline; everything else through _word.
        args = [int(w) if w.isdigit() and w.isascii() and (w[0] != "0" or len(w) == 1) else _word(w) for w in words]
        return TaskSpec(index, name, args, {}, None)
    lexer = shlex.shlex(line, posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise _LineError(f"cannot split line into words: {exc}") from None
    name = tokens[0]
    _check_name(name)
    return TaskSpec(index, name, [_scalar(token) for token in tokens[1:]], {}, None)


_VALID_NAMES: set[str] = set()
"""Task names already checked against TASK_NAME_PATTERN (a batch uses few names, many times)."""


def _word(word: str) -> Any:
    """_scalar for an unquoted word, with JSON integers (most arguments) read without json.loads."""
    digits = word[1:] if word[0] == "-" else word
    if digits.isdigit() and digits.isascii() and (digits[0] != "0" or len(digits) == 1):
        return int(word)
    return _scalar(word)


def _scalar(token: str) -> Any:
    if token[0] == '"':
        try:
            return json.loads(token)
        except ValueError:
            raise _LineError(f"bad quoted string {token}") from None
    if token[0] == "'" and token[-1] == "'" and len(token) >= 2:
        return token[1:-1]
    if token[0] in "-0123456789tfnNI":
        try:
            value = json.loads(token)
        except ValueError:
            return token
        if isinstance(value, float) and not math.isfinite(value):
            raise _LineError(f"{token} is not a finite number (JSON has no NaN or Infinity)")
        if isinstance(value, (int, float, bool)) or value is None:
            return value
    return token


def _parse_jsonl(line: str, index: int) -> TaskSpec:
    try:
        obj = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:
        raise _LineError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineError('each line must be a JSON object like {"task": "add", "args": [1, 2]}')
    unknown = set(obj) - JSONL_KEYS
    if unknown:
        raise _LineError(f"unknown keys {sorted(unknown)} (allowed: task, args, kwargs, id)")
    name, args, kwargs, task_id = obj.get("task"), obj.get("args", []), obj.get("kwargs", {}), obj.get("id")
    if not isinstance(name, str):
        raise _LineError('"task" must be a string')
    _check_name(name)
    if not isinstance(args, list):
        raise _LineError('"args" must be a list')
    if not isinstance(kwargs, dict):
        raise _LineError('"kwargs" must be an object')
    if (task_id is not None and not isinstance(task_id, (str, int))) or isinstance(task_id, bool):
        raise _LineError('"id" must be a string or an integer')
    return TaskSpec(index, name, args, kwargs, None if task_id is None else str(task_id))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _check_name(name: str) -> None:
    if not TASK_NAME_PATTERN.match(name):
        raise _LineError(f"invalid task name {name[:60]!r}")


def _check_size(spec: TaskSpec, limit: int) -> None:
    size = len(json.dumps([spec.args, spec.kwargs]).encode())
    if size > limit:
        raise _LineError(f"arguments are {size} bytes, over the {limit}-byte limit", "LimitExceeded")
