"""The one orjson marker (common.fastjson): both carriers use it, and the old result mark is still read."""

from __future__ import annotations

from typing import Any

import pytest

from common import fastjson
from common.fastjson import LEGACY_RESULT_MARK, ORJSON_MARK
from common.jobdata import encode_job_data
from common.wire import TaskResult, decode_results, encode_results

pytest.importorskip("orjson")


class _Spy:
    """orjson, noting each call."""

    def __init__(self, real: Any, used: list[str]) -> None:
        self.real, self.used = real, used

    def dumps(self, obj: Any) -> bytes:
        self.used.append("dumps")
        return self.real.dumps(obj)  # type: ignore[no-any-return]

    def loads(self, data: bytes | str) -> Any:
        self.used.append("loads")
        return self.real.loads(data)


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    used: list[str] = []
    monkeypatch.setattr(fastjson, "_orjson", _Spy(fastjson._orjson, used))
    return used


def _entry(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def test_job_data_and_result_entries_carry_the_same_mark() -> None:
    ok = TaskResult(0, "add", [1, 2], {}, None, True, 3, None, None, "w", 0.5)
    assert encode_results("w", 0, [ok])[ORJSON_MARK] == "1"
    assert f'"{ORJSON_MARK}":1'.encode() in encode_job_data({"v": 1})


@pytest.mark.parametrize("mark", [ORJSON_MARK, LEGACY_RESULT_MARK])
def test_marked_result_entries_are_read_with_orjson(mark: str, monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy(monkeypatch)
    fields = {"v": "1", "w": "old", "c": "2", "r": '[[4,null,"add",[2,2],{},1,4,0.01]]', mark: "1"}
    chunk, [result] = decode_results(_entry(fields))
    assert (chunk, result.index, result.value) == (2, 4, 4)
    assert used == ["loads"]


def test_unmarked_result_entries_are_read_with_json(monkeypatch: pytest.MonkeyPatch) -> None:
    used = _spy(monkeypatch)
    fields = {"v": "1", "w": "old", "c": "0", "r": '[[0,null,"power",[2,100],{},1,' + str(2**100) + ",0.1]]"}
    _chunk, [result] = decode_results(_entry(fields))
    assert result.value == 2**100
    assert used == []


def test_what_orjson_refuses_is_written_unmarked() -> None:
    assert fastjson.dumps([2**64]) is None
    assert fastjson.dumps({1: "non-string key"}) is None
    assert fastjson.dumps([1, "a"]) == b'[1,"a"]'


def test_malformed_marked_data_is_reported_by_json() -> None:
    with pytest.raises(ValueError, match="Expecting"):
        fastjson.loads(b"[1,", marked=True)
