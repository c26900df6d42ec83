"""The input reader's speed: MB/s on about 10 MB of long lines of each shape, and microseconds per line
on a million `add I J` lines, read from memory as the CLI reads a file (bytes, in blocks).

Run: python -m bench.reader_speed [--repeat N]   (one JSON line per workload: best of N, in CPU time)
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable

from common.gctuning import full_collections_deferred
from common.settings import Settings
from dispatcher.reader import BadInput, read_stream

LIMIT = Settings().max_arg_bytes
TARGET = 10_000_000
"""Bytes of input per long-line shape."""


def _lines(make: Callable[[int], bytes]) -> bytes:
    """Lines from `make(i)` until TARGET bytes."""
    parts: list[bytes] = []
    size = i = 0
    while size < TARGET:
        line = make(i) + b"\n"
        parts.append(line)
        size += len(line)
        i += 1
    return b"".join(parts)


LONG = 900_000
"""Bytes of a long line that is still within the default argument limit (so it is parsed)."""
ARGS = 600_000
"""Bytes of a line of many arguments: their JSON is longer than the line, and must stay within the limit."""
DEEP = 100_000


def _json_line(args: list[object]) -> bytes:
    return json.dumps({"task": "echo", "args": args}).encode()


def _shapes() -> dict[str, tuple[str, Callable[[int], bytes]]]:
    """Each shape: its format and a function that builds its i-th line."""
    nested = b"[" * DEEP + b"]" * DEEP
    return {
        "text: quoted string, 900 KB lines": ("text", lambda i: b'echo "' + b"q" * LONG + b'"'),
        "text: single-quoted string, 900 KB lines": ("text", lambda i: b"echo '" + b"s" * LONG + b"'"),
        "text: bare word, 900 KB lines": ("text", lambda i: b"echo " + b"w" * LONG),
        "text: many short integer args, 600 KB lines": ("text", lambda i: b"echo" + b" 7 42" * (ARGS // 5)),
        "text: many short mixed args, 600 KB lines": ("text", lambda i: b"echo" + b" 7 w 1.5 true" * (ARGS // 13)),
        "text: many short quoted args, 600 KB lines": ("text", lambda i: b"echo" + b" \"a\" 'b' c" * (ARGS // 10)),
        "text: nested 100,000 deep (one word)": ("text", lambda i: b"echo " + nested),
        "text: invalid UTF-8, 900 KB lines (refused)": ("text", lambda i: b"echo " + b"u" * LONG + b"\xff"),
        "text: 5 MB lines (refused unparsed)": ("text", lambda i: b'echo "' + b"x" * 5_000_000 + b'"'),
        "jsonl: long string, 900 KB lines": ("jsonl", lambda i: _json_line(["j" * LONG])),
        "jsonl: many small values, 600 KB lines": (
            "jsonl",
            lambda i: _json_line([[k, "v"] for k in range(ARGS // 14)]),
        ),
        "jsonl: nested 100,000 deep (refused)": ("jsonl", lambda i: b'{"task": "echo", "args": [' + nested + b"]}"),
    }


def _time_read(fmt: str, data: bytes, repeat: int) -> tuple[float, int, int]:
    """Best CPU time of `repeat` full reads (CPU: the machine may be shared), with item and error counts."""
    best, items, errors = float("inf"), 0, 0
    for _ in range(repeat):
        with full_collections_deferred():  # as in `dispatcher submit` (submit_batch holds them back)
            started = time.process_time()
            results = list(read_stream(io.BytesIO(data), fmt, LIMIT))  # type: ignore[arg-type]
            best = min(best, time.process_time() - started)
        items, errors = len(results), sum(isinstance(r, BadInput) for r in results)
        del results
    return best, items, errors


def main() -> None:
    """Print one JSON line per workload."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    for shape, (fmt, make) in _shapes().items():
        data = _lines(make)
        seconds, items, errors = _time_read(fmt, data, repeat)
        speed = round(len(data) / 1e6 / seconds, 1)
        print(
            json.dumps(
                {"shape": shape, "mb": round(len(data) / 1e6, 1), "mb_per_s": speed, "lines": items, "errors": errors}
            ),
            flush=True,
        )
    data = b"".join(b"add %d %d\n" % (i, i + 7) for i in range(1_000_000))
    seconds, items, _errors = _time_read("text", data, repeat)
    print(json.dumps({"shape": "1M `add I J` lines", "us_per_line": round(seconds / items * 1e6, 3)}), flush=True)


if __name__ == "__main__":
    main()
