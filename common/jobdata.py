"""The `data` field of a chunk job: how the dispatcher writes it and how workers read it back.

Plain JSON `[function, instance, args, kwargs]`, as RQ's JSONSerializer reads it, never zlib'd
(RQ's Job.restore keeps data that does not decompress as it is). orjson writes it when installed,
with common.fastjson's mark first in the payload; a worker reads marked data with orjson (faster
than json for a chunk of many tasks: docs/performance.md), everything else with json.
"""

from __future__ import annotations

import json
from typing import Any

from rq.serializers import JSONSerializer

from common import fastjson
from common.fastjson import ORJSON_MARK
from common.keys import CHUNK_FUNCTION

_MARKED_PREFIX = f'["{CHUNK_FUNCTION}",null,[{{"{ORJSON_MARK}":1,'.encode()


def encode_job_data(payload: Any) -> bytes:
    """The `data` field of a chunk job whose one argument is `payload` (a JSON object).

    What orjson refuses (an integer beyond 64 bits, a non-string key, a lone surrogate) goes
    through RQ's own JSON serializer, which raises the same errors as before for what JSON cannot
    carry.
    """
    if isinstance(payload, dict):
        marked = fastjson.dumps([CHUNK_FUNCTION, None, [{ORJSON_MARK: 1, **payload}], {}])
        if marked is not None:
            return marked
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
        if isinstance(data, bytes) and data.startswith(_MARKED_PREFIX):  # only written with orjson
            return fastjson.loads(data, marked=True)
        return JSONSerializer.loads(data)  # type: ignore[no-untyped-call]
