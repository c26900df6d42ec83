"""The wire formats round-trip, and anything else is refused with a clear message."""

from __future__ import annotations

import pytest

from common.errors import PayloadError
from common.wire import TaskResult, TaskSpec, decode_chunk, decode_results, encode_chunk, encode_results


def test_chunk_round_trip() -> None:
    tasks = [TaskSpec(0, "add", [1, 2]), TaskSpec(5, "echo", ["x"], {"k": 1}, "my-id")]
    decoded = decode_chunk(encode_chunk("b1", 3, 60, tasks))
    assert (decoded.batch_id, decoded.chunk, decoded.ttl) == ("b1", 3, 60)
    assert decoded.tasks == tasks


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not a dict", "must be an object"),
        ({"v": 2, "b": "x", "c": 0, "x": 1, "t": []}, "unsupported chunk wire version"),
        ({"v": 1, "c": 0, "x": 1, "t": []}, "no batch id"),
        ({"v": 1, "b": "x", "c": "0", "x": 1, "t": []}, "invalid chunk number"),
        ({"v": 1, "b": "x", "c": 0, "x": 0, "t": []}, "ttl"),
        ({"v": 1, "b": "x", "c": 0, "x": 1, "t": {}}, "no task list"),
        ({"v": 1, "b": "x", "c": 0, "x": 1, "t": [[0, None, "add"]]}, "must be \\[index"),
        ({"v": 1, "b": "x", "c": 0, "x": 1, "t": [[-1, None, "add", [], {}]]}, "invalid task index"),
        ({"v": 1, "b": "x", "c": 0, "x": 1, "t": [[0, None, 7, [], {}]]}, "name must be a string"),
        ({"v": 1, "b": "x", "c": 0, "x": 1, "t": [[0, 5, "add", [], {}]]}, "id must be a string"),
    ],
)
def test_malformed_chunks_are_refused(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_chunk(payload)


def test_results_round_trip_through_bytes_like_redis_returns() -> None:
    results = [
        TaskResult(0, "add", [1, 2], {}, None, True, 3, worker="w1", elapsed_ms=0.5),
        TaskResult(1, "divide", [1, 0], {}, "id-1", False, None, "ZeroDivisionError", "division by zero", "w1", 0.1),
    ]
    fields = encode_results("w1", 7, results)
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
    chunk, decoded = decode_results(as_bytes)
    assert chunk == 7
    assert decoded == results


def test_result_record_has_the_documented_shape() -> None:
    ok = TaskResult(0, "add", [1, 2], {}, None, True, 3, worker="w", elapsed_ms=1.23456).to_record()
    assert list(ok) == ["index", "id", "task", "args", "ok", "result", "error", "worker", "elapsed_ms"]
    assert ok["elapsed_ms"] == 1.235 and ok["error"] is None
    bad = TaskResult(1, "x", [], {}, "a", False, None, "UnknownTask", "nope", "w", 0).to_record()
    assert bad["result"] is None and bad["error"] == {"type": "UnknownTask", "message": "nope"}


def test_both_shapes_of_a_record_agree() -> None:
    """to_record builds the usual shape (ok, no kwargs) in one literal: it is the general shape's."""
    plain = TaskResult(2, "f", [1], {}, "id", True, [4], worker="w", elapsed_ms=0.5)
    general = TaskResult(2, "f", [1], {"k": 1}, "id", True, [4], worker="w", elapsed_ms=0.5).to_record()
    del general["kwargs"]
    assert list(plain.to_record().items()) == list(general.items())


def test_unknown_result_versions_are_refused() -> None:
    with pytest.raises(PayloadError, match="version"):
        decode_results({b"v": b"9", b"w": b"w", b"c": b"0", b"r": b"[]"})
    with pytest.raises(PayloadError, match="malformed"):
        decode_results({b"v": b"1", b"w": b"w", b"c": b"x", b"r": b"[]"})
