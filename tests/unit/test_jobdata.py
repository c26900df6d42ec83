"""Chunk job data: orjson-written data is marked and read back by orjson, everything else by json,
and both readers give exactly what was written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rq.serializers import JSONSerializer

from common import fastjson, keys
from common.jobdata import ORJSON_MARK, ChunkJobSerializer, encode_job_data
from common.wire import TaskSpec, decode_chunk, encode_chunk

orjson = pytest.importorskip("orjson")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@given(st.lists(st.lists(JSON_VALUES, max_size=3), max_size=4))
def test_every_payload_reads_back_exactly_whichever_encoder_wrote_it(arguments: list[list[Any]]) -> None:
    payload = encode_chunk("b", 3, 60, [TaskSpec(i, "t", args) for i, args in enumerate(arguments)])
    data = encode_job_data(payload)
    decoded = ChunkJobSerializer.loads(data)
    assert decoded[0] == keys.CHUNK_FUNCTION and decoded[1] is None and decoded[3] == {}
    read = decoded[2][0]
    assert {k: v for k, v in read.items() if k != ORJSON_MARK} == json.loads(json.dumps(payload))
    assert decode_chunk(read).rows == decode_chunk(payload).rows
    assert JSONSerializer.loads(data) == decoded  # RQ's own reader (rq info, the dashboard) reads the same


def test_big_integers_are_written_unmarked_and_read_exactly() -> None:
    payload = encode_chunk("b", 0, 60, [TaskSpec(0, "add", [2**64, -(2**70)])])
    data = encode_job_data(payload)
    assert f'"{ORJSON_MARK}"'.encode() not in data
    read = ChunkJobSerializer.loads(data)[2][0]
    assert read["t"][0][3] == [2**64, -(2**70)]


def test_marked_data_goes_to_orjson_and_other_data_to_json(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    monkeypatch.setattr(fastjson, "_orjson", _Spy(used))
    ChunkJobSerializer.loads(encode_job_data({"v": 1}))
    ChunkJobSerializer.loads(json.dumps([keys.CHUNK_FUNCTION, None, [{"v": 1}], {}]).encode())
    assert used == ["dumps", "loads"]


class _Spy:
    def __init__(self, used: list[str]) -> None:
        self.used = used

    def dumps(self, obj: Any) -> bytes:
        self.used.append("dumps")
        return orjson.dumps(obj)  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        self.used.append("loads")
        return orjson.loads(data)
