"""Read a batch lazily from text lines (`TASK ARG ...`) or JSON lines, one task per line."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, cast

from common.catalogue import TASK_NAME_PATTERN
from common.wire import MAX_NESTING_DEPTH, TaskResult, TaskSpec
from dispatcher.linejson import loads_array, loads_line, size_over, too_deep
from dispatcher.lines import BLOCK_BYTES, InputIdle, Line, check_line, max_line_bytes, stream_blocks

Format = Literal["text", "jsonl"]
InputFormat = Literal["text", "jsonl", "auto"]
"""A format, or "auto": JSON lines if the first task line starts with `{`, else text."""

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

LiveItem = Item | InputIdle
"""What a live input yields: items, and INPUT_IDLE while it has nothing to read."""


def detect_format(filename: str | None, explicit: str | None) -> InputFormat:
    """The input format: explicit if given, else from the file extension (.jsonl/.ndjson/.json), else
    "auto" (JSON lines if the first task line starts with `{`, text otherwise)."""
    if explicit in ("text", "jsonl"):
        return explicit  # type: ignore[return-value]
    if filename and filename.lower().endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "auto"


_INTEGER_LINE = re.compile(
    r"[ \t]*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)((?:[ \t]+-?(?:0|[1-9][0-9]{0,17}))*)\s*"
)
"""A task name and integer arguments of up to 18 digits (JSON integers; int() reads them exactly):
the lines of most big batches, parsed by one regular expression instead of word by word."""


def read_stream(
    stream: BinaryIO, fmt: InputFormat, max_arg_bytes: int, block_size: int = BLOCK_BYTES
) -> Iterator[Item]:
    """Yield one TaskSpec (or BadInput) per non-blank, non-comment line of a byte stream, lazily.

    Any line, of any size or bytes, is one item, found in time linear in its length: a line too
    long for the argument limit is refused unparsed, and bytes that are not UTF-8 fail their line alone.
    """
    items = _read(stream_blocks(stream, max_line_bytes(max_arg_bytes), block_size), fmt, max_arg_bytes)
    return cast(Iterator[Item], items)  # without idle_after, stream_blocks yields no INPUT_IDLE


def read_live_stream(stream: BinaryIO, fmt: InputFormat, max_arg_bytes: int, idle_after: float) -> Iterator[LiveItem]:
    """read_stream for a live producer (a pipe): also yields INPUT_IDLE while it has had nothing to read
    for `idle_after` seconds, so that results keep flowing while the input waits."""
    return _read(stream_blocks(stream, max_line_bytes(max_arg_bytes), idle_after=idle_after), fmt, max_arg_bytes)


def read_tasks(lines: Iterable[str] | Iterable[bytes], fmt: InputFormat, max_arg_bytes: int) -> Iterator[Item]:
    """read_stream for lines given one by one (each element is one line, with or without its end)."""
    limit = max_line_bytes(max_arg_bytes)
    return cast(Iterator[Item], _read(([check_line(line, limit)] for line in lines), fmt, max_arg_bytes))


def _read(blocks: Iterable[list[Line] | InputIdle], fmt: InputFormat, max_arg_bytes: int) -> Iterator[LiveItem]:
    parse = _PARSERS.get(fmt)  # None until the first task line shows the format
    integer_line = None if fmt == "jsonl" else _INTEGER_LINE.fullmatch
    short = max_arg_bytes // 6  # integers and ASCII: a line this short cannot exceed the limit
    index = line_no = 0
    for block in blocks:
        if isinstance(block, InputIdle):
            yield block
            continue
        if integer_line is not None and len(block) > 1 and (found := _integer_block(block, short)) is not None:
            name, rows = found
            yield from map(TaskSpec, range(index, index + len(rows)), itertools.repeat(name), rows)
            index += len(rows)
            line_no += len(rows)
            if parse is None:
                parse = _parse_text
            continue
        for line in block:
            line_no += 1
            if type(line) is not str:
                yield BadInput(index, line_no, line.error_type, line.message)  # type: ignore[union-attr]
                index += 1
                continue
            match = integer_line(line) if integer_line is not None and len(line) <= short else None
            if match is not None:
                name, words = match.groups()
                yield TaskSpec(index, name, [int(word) for word in words.split()], {}, None)
                index += 1
                if parse is None:
                    parse = _parse_text
                continue
            stripped = line.strip()
            if not stripped or stripped[0] == "#":
                continue
            if parse is None:
                parse = _parse_jsonl if stripped[0] == "{" else _parse_text
                if parse is _parse_jsonl:
                    integer_line = None
            try:
                spec = parse(stripped, index)
                if len(stripped) * 6 > max_arg_bytes:  # a character is at most 6 bytes of JSON (\u0001)
                    _check_size(spec, max_arg_bytes)
            except _LineError as exc:
                yield BadInput(index, line_no, exc.error_type, str(exc))
            except (ValueError, RecursionError) as exc:  # not foreseen above: still this line's error alone
                yield BadInput(index, line_no, "MalformedInput", f"cannot read line: {_shown(str(exc))}")
            else:
                yield spec
            index += 1


_INT = r"-?(?:0|[1-9][0-9]{0,17})"
_INTEGER_ROWS = re.compile(f"{_INT}(?: {_INT})*(?:\n{_INT}(?: {_INT})*)*")
"""The arguments of a block of integer lines, each line's name taken off: single spaces between them."""


def _integer_block(block: list[Line], short: int) -> tuple[str, list[list[int]]] | None:
    """A block whose every line is one task name and integer arguments between single spaces (what
    _INTEGER_LINE reads, in its plainest form), read by a few calls on the whole block and one
    JSON decode: (the name, each line's arguments). None for any other block, which is then read
    line by line (a refused line, a blank or comment line, another name, any other spacing or value).
    """
    try:
        text = "\n".join(block)  # type: ignore[arg-type]  # a refused line (not a str) raises here
    except TypeError:
        return None
    space = text.find(" ")
    if space <= 0:
        return None
    name = text[:space]
    lead = "\n" + name + " "
    if text.count(lead) != len(block) - 1 or _INTEGER_LINE.fullmatch(name) is None:
        return None
    body = text[space + 1 :].replace(lead, "\n")
    if _INTEGER_ROWS.fullmatch(body) is None:
        return None
    if len(text) > short and max(map(len, block)) > short:  # type: ignore[arg-type]
        return None  # a line long enough to need the size check
    rows = loads_array("[" + body.replace(" ", ",").replace("\n", "],[") + "]", len(block))
    return None if rows is None else (name, rows)


class _LineError(ValueError):
    def __init__(self, message: str, error_type: str = "MalformedInput") -> None:
        super().__init__(message)
        self.error_type = error_type


_TOKEN = re.compile(r"""\"[^"]*\"|'[^']*'|[^ \t\r\n"'][^ \t\r\n]*|["']""")
"""The words of a text line, as shlex (non-POSIX, split on whitespace) cuts them: a quoted word ends at
its closing quote; a lone quote is an unterminated one. One pass, linear in the line."""


def _parse_text(line: str, index: int) -> TaskSpec:
    # Plain lines need no tokenizer. Printable ASCII without quotes is the common case and the cheapest
    # to recognise (three C calls).
    if (line.isascii() and line.isprintable() and '"' not in line and "'" not in line) or _PLAIN_LINE.fullmatch(line):
        if len(line) > _LONG_LINE and (spec := _numbers_line(line, index)) is not None:
            return spec
        name, *words = line.split()
        if name not in _VALID_NAMES:
            _check_name(name)
            if len(_VALID_NAMES) < 10_000:
                _VALID_NAMES.add(name)
        if len(words) > _MANY_WORDS:
            return TaskSpec(index, name, _many_values(words), {}, None)
        # Plain non-negative integers (most arguments) inline; everything else through _word.
        args = [
            int(w) if w.isdigit() and w.isascii() and (w[0] != "0" or len(w) == 1) and len(w) < 19 else _word(w)
            for w in words
        ]
        return TaskSpec(index, name, args, {}, None)
    tokens = _TOKEN.findall(line)
    if '"' in tokens or "'" in tokens:
        raise _LineError("cannot split line into words: No closing quotation")
    name = tokens[0]
    _check_name(name)
    args = tokens[1:]
    return TaskSpec(index, name, _many_values(args) if len(args) > _MANY_WORDS else list(map(_scalar, args)), {}, None)


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
    _check_name(name)
    return TaskSpec(index, name, values, {}, None)


_INT_DIGITS = 4300
"""Most digits of an integer argument (CPython's default limit for int() of a string)."""

_SCALAR_START = frozenset("-0123456789tfnNI")
"""First characters of the words that may be JSON numbers or literals (_word); others are strings."""


def _many_values(tokens: list[str]) -> list[Any]:
    """[_scalar(t) for t in tokens], decoded as one JSON array when the tokens allow it: quoted tokens
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
        return [_scalar(token) for token in tokens]
    return values


def _word(word: str) -> Any:
    """A bare word's value: a JSON number, true, false or null, else the word itself as a string."""
    digits = word[1:] if word[0] == "-" else word
    if digits.isdigit() and digits.isascii() and (digits[0] != "0" or len(digits) == 1):
        if len(digits) > _INT_DIGITS:
            raise _LineError(f"an integer of {len(digits)} digits (at most {_INT_DIGITS})")
        return int(word)
    if word[0] in "-0123456789tfnNI":
        try:
            value = json.loads(word)
        except ValueError:
            return word
        if isinstance(value, float) and not math.isfinite(value):
            raise _LineError(f"{_shown(word)} is not a finite number (JSON has no NaN or Infinity)")
        if isinstance(value, (int, float, bool)) or value is None:
            return value
    return word


_scan_string = json.decoder.scanstring  # type: ignore[attr-defined]


def _scalar(token: str) -> Any:
    """A token's value: a JSON string in double quotes, raw text in single quotes, else _word."""
    if token[0] == '"':
        try:
            value, end = _scan_string(token, 1, True)
        except ValueError:
            end = -1
        if end != len(token):
            raise _LineError(f"bad quoted string {_shown(token)}")
        return value
    if token[0] == "'" and token[-1] == "'" and len(token) >= 2:
        return token[1:-1]
    return _word(token)


def _parse_jsonl(line: str, index: int) -> TaskSpec:
    if too_deep(line):
        raise _LineError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", "LimitExceeded")
    try:
        obj = loads_line(line)
    except ValueError as exc:
        raise _LineError(f"invalid JSON: {_shown(str(exc))}") from None
    except RecursionError:  # too_deep is exact for valid JSON; this is for what it cannot judge
        raise _LineError(f"JSON nested deeper than {MAX_NESTING_DEPTH} levels", "LimitExceeded") from None
    if not isinstance(obj, dict):
        raise _LineError('each line must be a JSON object like {"task": "add", "args": [1, 2]}')
    unknown = set(obj) - JSONL_KEYS
    if unknown:
        raise _LineError(f"unknown keys {_shown(str(sorted(unknown)))} (allowed: task, args, kwargs, id)")
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


def _check_name(name: str) -> None:
    if not TASK_NAME_PATTERN.match(name):
        hint = " (JSON lines need --format jsonl)" if name[:1] == "{" else ""
        raise _LineError(f"invalid task name {name[:60]!r}{hint}")


def _shown(text: str) -> str:
    """Text for an error message: a long token is cut, never echoed whole."""
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _check_size(spec: TaskSpec, limit: int) -> None:
    """Refuse arguments whose compact JSON (as the executor measures it) is over `limit` bytes."""
    size = size_over([spec.args, spec.kwargs], limit)
    if size is not None:
        raise _LineError(f"arguments are {size} bytes of JSON, over the {limit}-byte limit", "LimitExceeded")


_PARSERS: dict[str, Callable[[str, int], TaskSpec]] = {"text": _parse_text, "jsonl": _parse_jsonl}
