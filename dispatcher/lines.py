"""Split a byte stream into text lines, block by block: a line that cannot be text is refused, never raised."""

from __future__ import annotations

import functools
import os
import select
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

BLOCK_BYTES = 1 << 18
"""Bytes asked of the stream per read: big enough to split and decode many lines per call."""

LIVE_INPUT_IDLE_SECONDS = 0.1
"""How long a live input (stdin) may have nothing to read before what was read is sent and the
results that came meanwhile are written."""

LINE_ALLOWANCE_BYTES = 4096
"""Room on an input line beyond the argument limit, for the task name, an id and JSON keys."""


class InputIdle:
    """The marker a live input yields while it has nothing to read: its reader can deliver results and
    send a partly filled chunk meanwhile, instead of holding them until the next line comes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INPUT_IDLE"


INPUT_IDLE = InputIdle()


@dataclass(frozen=True, slots=True)
class Refused:
    """A line refused before it was parsed: too long, not UTF-8, or holding a NUL byte."""

    error_type: str
    message: str


Line = str | Refused
"""One physical input line: its text (without the line end), or why it is refused."""


def max_line_bytes(max_arg_bytes: int) -> int:
    """The longest line worth parsing: longer ones cannot hold arguments within the limit."""
    return max_arg_bytes + LINE_ALLOWANCE_BYTES


def stream_blocks(
    stream: BinaryIO, max_bytes: int, block_size: int = BLOCK_BYTES, idle_after: float | None = None
) -> Iterator[list[Line] | InputIdle]:
    """Every physical line of `stream`, blank ones included, in blocks of consecutive lines.

    Lines end at LF, CRLF or a lone CR. A line longer than `max_bytes` is counted, not kept: memory
    stays within a few blocks and one line, whatever the input. With `idle_after` (seconds), the
    stream is read through its file descriptor and INPUT_IDLE is yielded each time it has had
    nothing to read for that long (a pipe from a live producer); without it, no marker is yielded.
    """
    splitter = _Splitter(max_bytes)
    carry = b""
    for data in _pieces(stream, block_size, idle_after):
        if isinstance(data, InputIdle):
            yield data
            continue
        if carry:
            data, carry = carry + data, b""
        if not data:
            continue
        if data[-1] == 13:  # a CR that may be the first half of a CRLF split across reads
            data, carry = data[:-1], b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        block = splitter.feed(data)
        if block:
            yield block
    last = splitter.end(carry == b"\r")
    if last:
        yield last


def _pieces(stream: BinaryIO, block_size: int, idle_after: float | None) -> Iterator[bytes | InputIdle]:
    """The stream's bytes as they are read; with `idle_after`, INPUT_IDLE while none come."""
    if idle_after is None:
        read = getattr(stream, "read1", None) or stream.read  # read1: a pipe's lines are not held back
        yield _without_bom(read, block_size)
        yield from iter(functools.partial(read, block_size), b"")
        return
    fd = stream.fileno()  # unbuffered: select() then sees every byte not yet taken
    yield _without_bom(functools.partial(os.read, fd), block_size)  # nothing to deliver before a first line
    while True:
        if not select.select([fd], [], [], idle_after)[0]:
            yield INPUT_IDLE
            continue
        data = os.read(fd, block_size)
        if not data:
            return
        yield data


def _without_bom(read: Callable[[int], bytes], block_size: int) -> bytes:
    """The first bytes of the input without a UTF-8 byte-order mark (some editors write one). Reads
    again only while what it has could still be the start of one, so a pipe's first line is not held."""
    head = read(block_size)
    while head and len(head) < len(_BOM) and _BOM.startswith(head) and (more := read(block_size)):
        head += more
    return head[len(_BOM) :] if head.startswith(_BOM) else head


_BOM = b"\xef\xbb\xbf"


def check_line(line: str | bytes, max_bytes: int) -> Line:
    """One line given on its own (the Python API): refused like a line of a stream, else its text."""
    if isinstance(line, bytes):
        return _decode(line.rstrip(b"\r\n"), max_bytes)
    if "\0" in line or (len(line) * 4 > max_bytes and len(line.encode("utf-8", "surrogatepass")) > max_bytes):
        return _decode(line.encode("utf-8", "surrogatepass"), max_bytes)
    return line


class _Splitter:
    """Cuts data (line ends already LF) into lines, keeping the unfinished last line between feeds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.overlong: _Overlong | None = None

    def feed(self, data: bytes) -> list[Line]:
        first = data.find(b"\n")
        if first < 0:
            self._extend(data)
            return []
        last = data.rfind(b"\n")
        lines = [self._finish(data[:first])]
        if last > first:
            lines += _decode_block(data[first + 1 : last], self.max_bytes)
        self._extend(data[last + 1 :])
        return lines

    def end(self, line_end: bool) -> list[Line]:
        """The last line: one without a line end, or the one a final CR (held back from the last read) ends."""
        if line_end or self.pending_bytes or self.overlong is not None:
            return [self._finish(b"")]
        return []

    def _extend(self, data: bytes) -> None:
        if not data:
            return
        if self.overlong is not None:
            self.overlong.add(data)
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.max_bytes:
            self.overlong = _Overlong()
            for piece in self.pending:
                self.overlong.add(piece)
            self.pending, self.pending_bytes = [], 0

    def _finish(self, tail: bytes) -> Line:
        overlong = self.overlong
        if overlong is not None:
            self.overlong = None
            overlong.add(tail)
            return overlong.outcome(self.max_bytes)
        raw = b"".join((*self.pending, tail)) if self.pending else tail
        self.pending, self.pending_bytes = [], 0
        return _decode(raw, self.max_bytes)


class _Overlong:
    """A line over the limit, read through without being kept: its length and whether it matters."""

    def __init__(self) -> None:
        self.size = 0
        self.first: int | None = None
        """The line's first byte that is not ASCII whitespace (None while there is none)."""

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.first is None and (text := piece.lstrip()):
            self.first = text[0]

    def outcome(self, max_bytes: int) -> Line:
        if self.first is None or self.first == ord("#"):
            return ""  # a blank or comment line, however long, is skipped like any other
        return Refused("LimitExceeded", _too_long(self.size, max_bytes))


def _decode_block(data: bytes, max_bytes: int) -> Sequence[Line]:
    """Lines of a run of complete lines: one decode and one split while every line is fine."""
    if b"\0" not in data:
        try:
            lines = data.decode().split("\n")
        except UnicodeDecodeError:
            pass
        else:
            # a character is at most 4 bytes: only a line that long in characters can be too long
            if len(data) <= max_bytes or max(map(len, lines)) * 4 <= max_bytes:
                return lines
    return [_decode(raw, max_bytes) for raw in data.split(b"\n")]


def _decode(raw: bytes, max_bytes: int) -> Line:
    if len(raw) > max_bytes:
        overlong = _Overlong()
        overlong.add(raw)
        return overlong.outcome(max_bytes)
    if b"\0" not in raw:
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            problem = f"line is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    else:
        problem = f"line holds a NUL byte (at column {raw.index(0) + 1}): binary data is not a task"
    shown = raw.decode("utf-8", "replace").strip()
    if not shown or shown[0] == "#":
        return ""  # blank or a comment, whatever its bytes
    return Refused("MalformedInput", problem)


def _too_long(size: int, max_bytes: int) -> str:
    return (
        f"line is {size} bytes, over the {max_bytes}-byte line limit (the argument limit "
        f"{max_bytes - LINE_ALLOWANCE_BYTES} plus {LINE_ALLOWANCE_BYTES}); it was not parsed"
    )
