"""The input reader: text and JSON lines, lazily, with a clear error per line; hostile input included
(every line, of any size or bytes, is one task or one error)."""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.wire import MAX_NESTING_DEPTH, TaskSpec
from dispatcher import lineparse, reader
from dispatcher.reader import BadInput, Item, detect_format, read_stream, read_tasks


def specs(lines: list[str], fmt: str = "text") -> list[TaskSpec | BadInput]:
    return list(read_tasks(lines, fmt, 1_000_000))  # type: ignore[arg-type]


def test_text_lines_read_args_as_json_scalars() -> None:
    items = specs(["add 10 5", 'echo "hi there"', "echo 'single quoted'", "echo 1.5 true null -3 word"])
    assert [(s.task, s.args) for s in items if isinstance(s, TaskSpec)] == [
        ("add", [10, 5]),
        ("echo", ["hi there"]),
        ("echo", ["single quoted"]),
        ("echo", [1.5, True, None, -3, "word"]),
    ]


def test_quoted_numbers_stay_strings() -> None:
    (item,) = specs(['echo "10"'])
    assert isinstance(item, TaskSpec) and item.args == ["10"]


def test_blank_lines_and_comments_are_skipped_and_indexes_are_dense() -> None:
    items = specs(["# header", "", "add 1 2", "   ", "  # note", "add 3 4"])
    assert [i.index for i in items] == [0, 1]


def test_malformed_text_lines_become_bad_input_with_line_numbers() -> None:
    items = specs(["add 1 2", 'echo "unterminated', "bad-name 1", "add 3 4"])
    assert isinstance(items[0], TaskSpec) and isinstance(items[3], TaskSpec)
    assert isinstance(items[1], BadInput) and items[1].line_no == 2 and items[1].index == 1
    assert isinstance(items[2], BadInput) and "invalid task name" in items[2].message
    result = items[2].to_result()
    assert not result.ok and result.error_type == "MalformedInput" and "line 3" in (result.error_message or "")


def test_json_lines() -> None:
    items = specs(
        [
            '{"task": "add", "args": [10, 5]}',
            '{"task": "echo", "args": ["x"], "kwargs": {}, "id": "job-7"}',
            '{"task": "echo", "id": 42}',
            "[1, 2]",
            '{"task": "add", "arg": [1]}',
            '{"task": "add", "args": "1 2"}',
            "{not json",
            '{"task": "add", "id": true}',
        ],
        "jsonl",
    )
    assert [type(i).__name__ for i in items] == ["TaskSpec"] * 3 + ["BadInput"] * 5
    assert items[1].id == "job-7" and items[2].id == "42"  # type: ignore[union-attr]
    assert "unknown keys ['arg']" in items[4].message  # type: ignore[union-attr]


def test_oversized_arguments_are_refused() -> None:
    (item,) = list(read_tasks([f'echo "{"x" * 500}"'], "text", 100))
    assert isinstance(item, BadInput) and item.error_type == "LimitExceeded"


def test_reading_is_lazy() -> None:
    consumed = 0

    def endless() -> Iterator[str]:
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield f"add {i} {i}"

    first = list(itertools.islice(read_tasks(endless(), "text", 1000), 5))
    assert len(first) == 5 and consumed == 5


def test_format_detection() -> None:
    assert detect_format("a.jsonl", "auto") == "jsonl"
    assert detect_format("a.NDJSON", None) == "jsonl"
    assert detect_format("a.txt", "auto") == "auto"  # decided by the first task line
    assert detect_format("<stdin>", None) == "auto"
    assert detect_format("a.txt", "jsonl") == "jsonl"
    assert detect_format("a.jsonl", "text") == "text"


# -- hostile input --------------------------------------------------------------------------------

LIMIT = 1_000_000
"""The default argument limit (Settings.max_arg_bytes)."""
FIVE_MB = 5_000_000


def read(data: bytes, fmt: str = "auto", limit: int = LIMIT, block_size: int | None = None) -> list[Item]:
    extra = {} if block_size is None else {"block_size": block_size}
    return list(read_stream(io.BytesIO(data), fmt, limit, **extra))  # type: ignore[arg-type]


def bad(item: Item, line_no: int, error_type: str = "MalformedInput") -> BadInput:
    assert isinstance(item, BadInput), item
    assert (item.line_no, item.error_type) == (line_no, error_type), item
    assert len(item.message) < 300  # never echoes a huge line back
    return item


def good(item: Item, task: str = "add") -> TaskSpec:
    assert isinstance(item, TaskSpec), item
    assert item.task == task
    return item


def between_good_lines(line: bytes, fmt: str = "text") -> Item:
    """The hostile line as line 2 of three; the lines around it must be unaffected."""
    if fmt == "jsonl":
        first, last = b'{"task": "add", "args": [1, 2]}\n', b'\n{"task": "add", "args": [3, 4]}\n'
    else:
        first, last = b"add 1 2\n", b"\nadd 3 4\n"
    items = read(first + line + last, fmt)
    assert len(items) == 3, [type(i).__name__ for i in items]
    assert good(items[0]).args == [1, 2] and good(items[2]).args == [3, 4]
    assert [i.index for i in items] == [0, 1, 2]
    return items[1]


def test_a_5mb_quoted_argument_is_refused_unparsed() -> None:
    item = bad(between_good_lines(b'echo "' + b"x" * FIVE_MB + b'"'), 2, "LimitExceeded")
    assert "bytes" in item.message and str(LIMIT) in item.message


def test_a_5mb_bare_word_is_refused() -> None:
    bad(between_good_lines(b"echo " + b"x" * FIVE_MB), 2, "LimitExceeded")


def test_a_5mb_json_line_is_refused() -> None:
    line = json.dumps({"task": "echo", "args": ["x" * FIVE_MB]}).encode()
    bad(between_good_lines(line, "jsonl"), 2, "LimitExceeded")


def test_a_5mb_comment_line_is_skipped_like_any_comment() -> None:
    assert [i.index for i in read(b"add 1 2\n#" + b"x" * FIVE_MB + b"\nadd 3 4\n")] == [0, 1]


def test_long_lines_within_the_limit_are_read() -> None:
    text = "y" * 900_000
    assert good(between_good_lines(f'echo "{text}"'.encode()), "echo").args == [text]
    assert good(between_good_lines(f"echo '{text}'".encode()), "echo").args == [text]
    assert good(between_good_lines(f"echo {text}".encode()), "echo").args == [text]
    words = " ".join(["7", "w", "1.5", "true"] * 50_000)
    assert good(between_good_lines(f"echo {words}".encode()), "echo").args == [7, "w", 1.5, True] * 50_000
    line = json.dumps({"task": "echo", "args": [text]}).encode()
    assert good(between_good_lines(line, "jsonl"), "echo").args == [text]


def test_arguments_over_the_limit_within_a_short_line_are_refused() -> None:
    (item,) = read('echo "{}"\n'.format("é" * 60).encode(), limit=100)  # 60 characters, 129 bytes of JSON
    bad(item, 1, "LimitExceeded")


@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 5_000, 100_000])
def test_deep_nesting_in_a_json_line_is_that_lines_error(depth: int) -> None:
    line = b'{"task": "echo", "args": [' + b"[" * depth + b"]" * depth + b"]}"
    item = bad(between_good_lines(line, "jsonl"), 2, "LimitExceeded")
    assert "nest" in item.message
    objects = b'{"task": "echo", "kwargs": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    bad(between_good_lines(objects, "jsonl"), 2, "LimitExceeded")


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count() -> None:
    depth = MAX_NESTING_DEPTH - 2  # the line's object and its args list are two levels
    line = b'{"task": "echo", "args": [' + b"[" * depth + b"]" * depth + b"]}"
    assert good(between_good_lines(line, "jsonl"), "echo").args
    text = "[" * 100_000 + '\\"{'
    line = json.dumps({"task": "echo", "args": [text, "]" * 5]}).encode()
    assert good(between_good_lines(line, "jsonl"), "echo").args == [text, "]" * 5]
    wide = json.dumps({"task": "echo", "args": [[[i]] for i in range(50_000)]}).encode()
    assert len(good(between_good_lines(wide, "jsonl"), "echo").args) == 50_000


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deep_nesting_in_text_line_arguments_is_one_line(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    assert good(between_good_lines(f"echo {nested}".encode()), "echo").args == [nested]
    assert good(between_good_lines(f'echo "{nested}"'.encode()), "echo").args == [nested]
    assert isinstance(between_good_lines(f'echo "{"[" * depth}'.encode()), BadInput)  # unterminated quote


def test_an_integer_too_long_for_int_is_that_lines_error() -> None:
    digits = b"1" * 5_000  # int() refuses more than 4,300 digits: it used to end the dispatcher
    item = bad(between_good_lines(b"echo " + digits), 2)
    assert "5000 digits" in item.message
    assert isinstance(between_good_lines(b"echo " + b" ".join([digits] * 40)), BadInput)
    assert isinstance(between_good_lines(b'{"task": "echo", "args": [' + digits + b"]}", "jsonl"), BadInput)


def test_invalid_utf8_lines_are_their_own_errors_with_line_numbers() -> None:
    data = b"add 1 2\n\xff\xfe bad\nadd 3 4\necho caf\xc3\xa9\necho \xc3\n\n# \xff comment\nadd 5 6"
    items = read(data)
    assert len(items) == 6 and [i.index for i in items] == list(range(6))
    assert "UTF-8" in bad(items[1], 2).message
    assert good(items[2]).args == [3, 4]
    assert good(items[3], "echo").args == ["café"]
    bad(items[4], 5)
    assert good(items[5]).args == [5, 6]


def test_line_numbers_hold_across_read_blocks() -> None:
    lines = [f"add {i} {i}".encode() for i in range(300_000)]
    lines[1] = b"\xff"
    lines[150_001] = "é\xff".encode("latin-1")
    lines[299_999] = b"bad-name 1"
    items = read(b"\n".join(lines))
    assert len(items) == 300_000
    assert [(i.line_no, i.index) for i in items if isinstance(i, BadInput)] == [
        (2, 1),
        (150_002, 150_001),
        (300_000, 299_999),
    ]


MIXED = (
    b"add 1 2\r\nbad-name\radd 5 6\n\r\n\xffbad\r\necho caf\xc3\xa9\r"
    + b"echo "
    + b"z" * 300
    + b"\r\n"
    + b"add 1\x002\n"
    + b'echo "\xe2\x82\xac"\n'
    + b"bad-name"
)


def test_cr_lf_mixes_nul_bytes_and_a_last_line_without_newline() -> None:
    items = read(MIXED, limit=200)
    kinds = [(type(i).__name__, i.line_no if isinstance(i, BadInput) else i.task) for i in items]
    assert kinds == [
        ("TaskSpec", "add"),
        ("BadInput", 2),
        ("TaskSpec", "add"),
        ("BadInput", 5),
        ("TaskSpec", "echo"),
        ("BadInput", 7),
        ("BadInput", 8),
        ("TaskSpec", "echo"),
        ("BadInput", 10),
    ]
    assert "NUL" in bad(items[6], 8).message
    bad(items[5], 7, "LimitExceeded")
    assert good(items[7], "echo").args == ["€"]


def test_every_block_size_reads_the_same() -> None:
    expected = read(MIXED, limit=200)
    for size in range(1, 40):
        assert read(MIXED, limit=200, block_size=size) == expected, size


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    for size in (1, 2, 3, 4, 1000):
        items = read(b"\xef\xbb\xbfadd 1 2\n\xef\xbb\xbfadd 3 4", block_size=size)
        assert good(items[0]).args == [1, 2] and isinstance(items[1], BadInput), size  # only the first is a BOM
        assert [good(i).args for i in read(b'\xef\xbb\xbf{"task": "add", "args": [1]}', block_size=size)] == [[1]]
    assert read(b"\xef\xbb\xbf") == [] and read(b"\xef\xbb") != []


def test_json_lines_are_detected_when_no_format_is_given() -> None:
    items = read(b'\n# jobs\n{"task": "add", "args": [1, 2]}\n{"task": "add", "args": [3, 4], "id": "x"}\n')
    assert [good(i).args for i in items] == [[1, 2], [3, 4]]
    assert [good(i).args for i in read(b"\nadd 1 2\n")] == [[1, 2]]


def test_json_in_a_text_batch_says_to_use_format_jsonl() -> None:
    (item,) = read(b'{"task": "add", "args": [1, 2]}\n', "text")
    assert "--format jsonl" in bad(item, 1).message


def test_a_line_far_over_the_limit_is_never_held_in_memory() -> None:
    class Endless(io.RawIOBase):
        """A 200 MB line, then one good line, without ever allocating more than one block."""

        block = b"x" * 1_000_000

        def __init__(self) -> None:
            self.blocks = itertools.chain([b"echo "], itertools.repeat(self.block, 200), [b"\nadd 1 2\n"])

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return next(self.blocks, b"")

    tracemalloc.start()
    try:
        items = list(read_stream(Endless(), "text", LIMIT))  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    bad(items[0], 1, "LimitExceeded")
    assert good(items[1]).args == [1, 2]
    assert peak < 20 * LIMIT


def test_a_pipe_line_is_read_without_waiting_for_more() -> None:
    """A live producer's line is yielded while the pipe stays open (one read takes what is there)."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream, os.fdopen(write_end, "wb") as producer:
        producer.write(b"add 1 2\n")
        producer.flush()
        got: list[Item] = []
        reader_thread = threading.Thread(
            target=lambda: got.append(next(read_stream(stream, "auto", LIMIT))), daemon=True
        )
        reader_thread.start()
        reader_thread.join(timeout=30)
        assert got and good(got[0]).args == [1, 2]


def test_reading_a_stream_is_lazy() -> None:
    class Counting(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            return b"add 1 2\n" * 1000

    stream = Counting()
    first = list(itertools.islice(read_stream(stream, "text", LIMIT), 5))  # type: ignore[arg-type]
    assert len(first) == 5 and stream.reads == 1


# -- long lines of many arguments: decoded at once, exactly as token by token ----------------------------

TOKENS = st.sampled_from(
    [
        "0",
        "7",
        "-42",
        "01",
        "-0",
        "1.5",
        "-2.5e3",
        "1e999",
        "true",
        "false",
        "null",
        "nothing",
        "NaN",
        "-Infinity",
        "x",
        "-x",
        "a\\b",
        "[1",
        "2]",
        "{",
        "1,2",
        "12345678901234567890123",
        "\x01",
        "é",
        '"q r"',
        '"10"',
        '"a\\"',
        '"a\\\\"',
        '"\\u00e9"',
        '"\t"',
        "''",
        "'it is'",
        "'a\"b'",
        "it's",
        'a"b',
        "[1,2]",
        '{"k":1}',
    ]
)


@given(st.lists(TOKENS, min_size=1, max_size=80))
def test_many_arguments_decode_as_token_by_token(tokens: list[str]) -> None:
    def outcome(parse: Callable[[], Any]) -> str:
        try:
            return repr(parse())
        except lineparse.LineError as exc:
            return f"error: {exc}"

    assert outcome(lambda: lineparse.many_values(tokens)) == outcome(lambda: [lineparse.scalar(t) for t in tokens])
    args = tokens + ["7"] * 600  # long enough for the one-decode paths (_numbers_line, _many_values)
    line = "echo " + " ".join(args)
    assert outcome(lambda: lineparse.parse_text(line, 0).args) == outcome(lambda: [lineparse.scalar(t) for t in args])


def _as_tuples(items: list[Item]) -> list[tuple[Any, ...]]:
    return [
        (i.index, i.task, i.args, i.kwargs, i.id) if isinstance(i, TaskSpec) else (i.index, i.line_no, i.error_type)
        for i in items
    ]


# A table of inputs, several to a line: it reads at a glance, one per line it does not.
BLOCK_LINES = [
    b"add 1 2", b"add -3 0", b"add -0 7", b"add 123456789012345678 -123456789012345678", b"add", b"add 5",
    b"add 01 2", b"add 1234567890123456789 1", b"add 1  2", b"add 1\t2", b"add 1 2 ", b" add 1 2", b"",
    b"# add 1 2", b"addx 1 2", b"ad 1 2", b"math.add 1 2", b"add 1 x", b'add "1" 2', b"add 1.5 2",
    b"add 1 2\x00", b"add \xff 2", b"add 1e3 2", b"add - 2", b"add --1 2", b"add 1- 2", b"add \xd9\xa1 2",
    b"{\"task\": \"add\"}", b"add 1 2\radd 3 4", b"add [1] 2", b"add 1,2 3",
]  # fmt: skip


@given(st.lists(st.sampled_from(BLOCK_LINES), min_size=2, max_size=40), st.sampled_from([1, 7, 64, 1 << 18]))
def test_a_block_of_integer_lines_reads_exactly_as_line_by_line(lines: list[bytes], block_size: int) -> None:
    """The whole-block path for plain integer lines (reader._integer_block) gives what reading each
    line on its own gives, for blocks of such lines and for every near miss among them."""
    data = b"\n".join(lines) + b"\n"
    by_block = list(read_stream(io.BytesIO(data), "auto", 1_000_000, block_size=block_size))
    by_line = list(read_tasks(data.replace(b"\r", b"\n").split(b"\n")[:-1], "auto", 1_000_000))
    assert _as_tuples(by_block) == _as_tuples(by_line)


def test_a_block_of_integer_lines_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain block takes the whole-block path; a block with one other line in it does not."""
    taken: list[bool] = []
    whole = reader._integer_block

    def spy(block: list[Any], short: int) -> Any:
        found = whole(block, short)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(reader, "_integer_block", spy)
    items = list(read_stream(io.BytesIO(b"".join(b"add %d %d\n" % (i, -i) for i in range(1000))), "auto", 10**6))
    assert [(s.index, s.args) for s in items if isinstance(s, TaskSpec)] == [(i, [i, -i]) for i in range(1000)]
    assert taken and all(taken)
    taken.clear()
    list(read_stream(io.BytesIO(b"add 1 2\n" * 10 + b"add 1 2 \n" + b"add 1 2\n" * 10), "auto", 10**6))
    assert taken == [False]


def test_a_long_integer_line_in_a_block_is_still_size_checked() -> None:
    """Lines long enough to need the argument size check leave the whole-block path."""
    long_line = "add " + " ".join(["123456789"] * 30)
    data = f"add 1 2\n{long_line}\nadd 3 4\n".encode()
    items = list(read_stream(io.BytesIO(data), "auto", 100))
    assert [type(i).__name__ for i in items] == ["TaskSpec", "BadInput", "TaskSpec"]
    assert isinstance(items[1], BadInput) and items[1].error_type == "LimitExceeded"


def test_a_live_stream_says_when_it_waits() -> None:
    from dispatcher.lines import INPUT_IDLE
    from dispatcher.reader import read_live_stream

    read_end, write_end = os.pipe()
    with open(read_end, "rb", buffering=0) as stream:
        os.write(write_end, b"add 1 2\nadd 3")  # a whole line, then part of one
        items = read_live_stream(stream, "text", LIMIT, idle_after=0.01)  # type: ignore[arg-type]
        assert next(items) == TaskSpec(0, "add", [1, 2], {}, None)
        assert next(items) is INPUT_IDLE  # the producer waits: nothing is held back
        assert next(items) is INPUT_IDLE
        os.write(write_end, b" 4\n")
        os.close(write_end)
        assert [item for item in items if item is not INPUT_IDLE] == [TaskSpec(1, "add", [3, 4], {}, None)]


def test_the_look_ahead_of_a_live_input_ends_when_it_waits() -> None:
    from dispatcher.chunking import peek_total
    from dispatcher.lines import INPUT_IDLE

    total, items = peek_total(iter(["a", "b", INPUT_IDLE, "c"]), limit=10, live=True)
    assert total is None and list(items) == ["a", "b", INPUT_IDLE, "c"]
    total, items = peek_total(iter(["a", "b"]), limit=10, live=True)
    assert total == 2 and list(items) == ["a", "b"]
