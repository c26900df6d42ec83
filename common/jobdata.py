"""The `data` field of a chunk job: how the dispatcher writes it and how workers read it back.

Plain JSON `[function, instance, args, kwargs]`, as RQ's JSONSerializer reads it, never zlib'd
(RQ's Job.restore keeps data that does not decompress as it is). orjson writes it when installed,
with a mark first in the payload; a worker reads marked data with orjson (about three times faster
than json for a chunk of a thousand tasks), everything else with json. orjson refuses to write an
integer beyond 64 bits, so marked data holds none, and orjson reads back exactly what it wrote
(it would read a bigger integer as a float: unmarked data, which may hold one, never goes there).
"""

from __future__ import annotations

import json
from typing import Any

from rq.serializers import JSONSerializer

from common.keys import CHUNK_FUNCTION

try:  # the `fast` extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None  # type: ignore[assignment]

ORJSON_MARK = "i64"
"""Payload key (value 1) saying orjson wrote this data: every integer in it fits 64 bits."""
_MARKED_PREFIX = f'["{CHUNK_FUNCTION}",null,[{{"{ORJSON_MARK}":1,'.encode()


def encode_job_data(payload: Any) -> bytes:
    """The `data` field of a chunk job whose one argument is `payload` (a JSON object).

    What orjson refuses (an integer beyond 64 bits, a non-string key, a lone surrogate) goes
    through RQ's own JSON serializer, which raises the same errors as before for what JSON cannot
    carry.
    """
    if _orjson is not None and isinstance(payload, dict):
        try:
            return _orjson.dumps([CHUNK_FUNCTION, None, [{ORJSON_MARK: 1, **payload}], {}])
        except TypeError:
            pass
    return json.dumps([CHUNK_FUNCTION, None, [payload], {}]).encode()


class ChunkJobSerializer:
    """RQ's JSONSerializer, reading data marked by encode_job_data with orjson."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        """As RQ's JSONSerializer."""
        return JSONSerializer.dumps(obj)  # type: ignore[no-untyped-call, no-any-return]

    @staticmethod
    def loads(data: bytes | str) -> Any:
        """orjson for data encode_job_data marked, json for everything else."""
        if _orjson is not None and isinstance(data, bytes) and data.startswith(_MARKED_PREFIX):
            return _orjson.loads(data)
        return JSONSerializer.loads(data)  # type: ignore[no-untyped-call]
