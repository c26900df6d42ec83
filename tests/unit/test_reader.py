"""The input reader: text and JSON lines, lazily, with a clear error per malformed line."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from common.wire import TaskSpec
from dispatcher.reader import BadInput, detect_format, read_tasks


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
    items = specs([
        '{"task": "add", "args": [10, 5]}',
        '{"task": "echo", "args": ["x"], "kwargs": {}, "id": "job-7"}',
        '{"task": "echo", "id": 42}',
        "[1, 2]",
        '{"task": "add", "arg": [1]}',
        '{"task": "add", "args": "1 2"}',
        "{not json",
        '{"task": "add", "id": true}',
    ], "jsonl")  # fmt: skip
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
    assert detect_format("a.txt", "auto") == "text"
    assert detect_format("<stdin>", "auto") == "text"
    assert detect_format("a.txt", "jsonl") == "jsonl"
