"""The wire formats, plain JSON, versioned, never pickle: what a chunk job carries
(common.wire_chunks) and what a worker publishes to a batch's result stream (common.wire_results).

The public names of both live here, so the rest of the code imports the wire from one place.
"""

from __future__ import annotations

from common.wire_chunks import (
    MAX_NESTING_DEPTH,
    WIRE_VERSION,
    ChunkPayload,
    JSONValue,
    TaskRow,
    TaskSpec,
    decode_chunk,
    encode_chunk,
    encode_value,
)
from common.wire_results import (
    ATTEMPTS_FIELD,
    TRACEBACK_FIELD,
    ResultRow,
    TaskResult,
    decode_results,
    encode_result_rows,
    encode_results,
    result_row,
)

__all__ = [
    "ATTEMPTS_FIELD",
    "MAX_NESTING_DEPTH",
    "TRACEBACK_FIELD",
    "WIRE_VERSION",
    "ChunkPayload",
    "JSONValue",
    "ResultRow",
    "TaskResult",
    "TaskRow",
    "TaskSpec",
    "decode_chunk",
    "decode_results",
    "encode_chunk",
    "encode_result_rows",
    "encode_results",
    "encode_value",
    "result_row",
]
