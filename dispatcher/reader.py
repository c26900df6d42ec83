"""Read a batch lazily from text lines (`TASK ARG ...`) or JSON lines, one task per line: the block
loop, with its whole-block path for integer lines; each other line goes to dispatcher.lineparse."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, cast

from common.wire import TaskResult, TaskSpec
from dispatcher.linejson import loads_array
from dispatcher.lineparse import PARSERS, LineError, check_size, parse_jsonl, parse_text, shown
from dispatcher.lines import BLOCK_BYTES, InputIdle, Line, check_line, max_line_bytes, stream_blocks

InputFormat = Literal["text", "jsonl", "auto"]
"""A format, or "auto": JSON lines if the first task line starts with `{`, else text."""


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
    parse = PARSERS.get(fmt)  # None until the first task line shows the format
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
                parse = parse_text
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
                    parse = parse_text
                continue
            stripped = line.strip()
            if not stripped or stripped[0] == "#":
                continue
            if parse is None:
                parse = parse_jsonl if stripped[0] == "{" else parse_text
                if parse is parse_jsonl:
                    integer_line = None
            try:
                spec = parse(stripped, index)
                if len(stripped) * 6 > max_arg_bytes:  # a character is at most 6 bytes of JSON (\u0001)
                    check_size(spec, max_arg_bytes)
            except LineError as exc:
                yield BadInput(index, line_no, exc.error_type, str(exc))
            except (ValueError, RecursionError) as exc:  # not foreseen above: still this line's error alone
                yield BadInput(index, line_no, "MalformedInput", f"cannot read line: {shown(str(exc))}")
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
