"""The fast paths added for throughput give exactly what the general paths give."""

from __future__ import annotations

import math
import shlex
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import default_catalogue
from common.catalogue import Catalogue
from common.errors import InvalidArguments
from common.fastjson import ORJSON_MARK
from common.wire import TaskResult, decode_results, encode_results
from dispatcher import lineparse, reader
from dispatcher.chunking import auto_chunk_size


def _shlex_parse(line: str) -> Any:
    lexer = shlex.shlex(line, posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    lineparse.check_name(tokens[0])
    return reader.TaskSpec(0, tokens[0], [lineparse.scalar(token) for token in tokens[1:]], {}, None)


def _outcome(parse: Any, line: str) -> str:
    try:
        return repr(parse(line))
    except lineparse.LineError as exc:
        return f"error: {exc}"


# A table of inputs, several to a line: it reads at a glance, one per line it does not.
WORDS = st.sampled_from([
    "0", "00", "-0", "-01", "7", "-42", "1.5", "1e3", "true", "null", "NaN", "-Infinity", "abc", "-", "--",
    "12345678901234567890", "x_y", "²", "٣", "-٣", "é", "'a b'", '"q r"', "\x0b",
])  # fmt: skip
SEPARATORS = st.sampled_from([" ", "  ", "\t", " \t "])


@given(st.lists(st.tuples(SEPARATORS, WORDS), max_size=6), st.sampled_from(["add", "echo", "a.b", "bad-name"]))
def test_text_fast_path_parses_like_shlex(words: list[tuple[str, str]], name: str) -> None:
    line = (name + "".join(sep + word for sep, word in words)).strip()
    assert _outcome(lambda text: lineparse.parse_text(text, 0), line) == _outcome(_shlex_parse, line)


# A table of inputs, several to a line: it reads at a glance, one per line it does not.
INTEGER_WORDS = st.sampled_from(["0", "00", "-0", "-01", "7", "-42", "123456789012345678", "1234567890123456789",
                                 "-999999999999999999", "1e3", "1_0", "+5", "٣", "0x1"])  # fmt: skip
PADDING = st.sampled_from(["", " ", "\t", "\n", " \r\n", "\x0b", "\xa0"])


NAMES = st.sampled_from(["add", "a.b", "x_1", "1bad", "a..b", "#add"])


@given(PADDING, NAMES, st.lists(st.tuples(SEPARATORS, INTEGER_WORDS), max_size=4), PADDING)
def test_integer_line_fast_path_reads_like_the_general_parser(
    lead: str, name: str, words: list[tuple[str, str]], tail: str
) -> None:
    line = lead + name + "".join(sep + word for sep, word in words) + tail
    fast = list(reader.read_tasks([line], "text", 10_000))
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        assert fast == []
        return
    try:
        expected: Any = lineparse.parse_text(stripped, 0)
    except lineparse.LineError as exc:
        assert len(fast) == 1 and isinstance(fast[0], reader.BadInput) and fast[0].message == str(exc)
        return
    assert fast == [expected]


VALUES = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


def _full_check(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    definition = default_catalogue.get(name)
    try:
        # the general path: what check_arguments does when the fast path does not apply
        type(definition).check_arguments(
            definition.__class__(definition.name, definition.func, definition.signature, definition.hints), args, kwargs
        )
    except InvalidArguments as exc:
        return str(exc)
    return "ok"


def _check(name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    try:
        default_catalogue.get(name).check_arguments(args, kwargs)
    except InvalidArguments as exc:
        return str(exc)
    return "ok"


@given(
    st.sampled_from(["add", "divide", "sleep", "fib", "sha256", "echo"]),
    st.lists(VALUES, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "n"]), VALUES, max_size=1),
)
def test_argument_fast_path_agrees_with_full_check(name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    assert _check(name, args, kwargs) == _full_check(name, args, kwargs)


def test_fast_path_is_off_for_value_dependent_hints() -> None:
    catalogue = Catalogue()

    @catalogue.register
    def pick(mode: typing.Literal["a", "b"], n: int = 1) -> str:
        return mode * n

    definition = catalogue.get("pick")
    assert definition.fast_types is None
    with pytest.raises(InvalidArguments):
        definition.check_arguments(["c"], {})


def test_bool_is_not_a_number_on_the_fast_path() -> None:
    with pytest.raises(InvalidArguments, match="must be"):
        default_catalogue.get("add").check_arguments([True, 1], {})


def _entry(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_result_rows_round_trip_big_integers_exactly() -> None:
    big = TaskResult(1, "power", [2, 100], {}, "id", True, 2**100, None, None, "w", 0.25)
    fields = encode_results("w", 3, [big])
    assert ORJSON_MARK not in fields  # orjson cannot carry 2**100: readers must use json
    chunk, [result] = decode_results(_entry(fields))
    assert (chunk, result.value, result.id) == (3, 2**100, "id")


def test_a_nan_argument_echoed_back_does_not_break_the_entry() -> None:
    failed = TaskResult(0, "add", [math.nan, 1], {}, None, False, None, "LimitExceeded", "not finite", "w", 0.1)
    _chunk, [result] = decode_results(_entry(encode_results("w", 0, [failed])))
    assert result.args == [None, 1]
    assert (result.ok, result.error_type) == (False, "LimitExceeded")


def test_entries_without_the_orjson_mark_still_decode() -> None:
    rows = '[[4,null,"add",[2,2],{},1,4,0.01]]'
    _chunk, [result] = decode_results({b"v": b"1", b"w": b"old", b"c": b"0", b"r": rows.encode()})
    assert (result.index, result.value, result.worker) == (4, 4, "old")


@pytest.mark.parametrize(("total", "processes", "slots"), [(200, 2, 20), (200, 20, 20), (2000, 2, 200), (10, 1, 4)])
def test_auto_chunk_size_spreads_slow_tasks_over_every_slot(total: int, processes: int, slots: int) -> None:
    size = auto_chunk_size(total, processes, slots)
    chunks = math.ceil(total / size)
    assert chunks >= min(processes, total)  # every process gets work
    if total >= slots:
        assert size >= slots // processes  # and a chunk fills the slots of the process running it


@pytest.mark.parametrize("with_orjson", [True, False])
def test_rows_decode_the_same_with_or_without_orjson(with_orjson: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from common import fastjson

    if not with_orjson:
        monkeypatch.setattr(fastjson, "_orjson", None)
    results = [
        TaskResult(0, "add", [1, 2], {}, None, True, 3, None, None, "w", 0.5),
        TaskResult(1, "echo", ["é", {"k": [1.5]}], {"a": 1}, "x", True, ["é"], None, None, "w", 0.25),
        TaskResult(2, "add", [math.inf, 1], {}, None, False, None, "LimitExceeded", "not finite", "w", 0.1),
    ]
    fields = encode_results("w", 5, results)
    assert (ORJSON_MARK in fields) is with_orjson
    chunk, decoded = decode_results(_entry(fields))
    assert chunk == 5
    assert decoded[:2] == results[:2]
    assert decoded[2].args == [None, 1] and decoded[2].error_type == "LimitExceeded"
