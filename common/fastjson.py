"""The one orjson marker: data marked `i64` was written by orjson, so orjson may read it back.

orjson refuses to write an integer beyond 64 bits, and reads such an integer as a float; data it
wrote holds none, so it reads that data back exactly. Writers mark what orjson wrote, readers use
orjson only for marked data and json for everything else. Where the mark sits depends on the
carrier: first key of a chunk job's payload (common.jobdata), a field of a result-stream entry
(common.wire). Without the `fast` extra nothing is marked and everything goes through json.
"""

from __future__ import annotations

import json
from typing import Any

try:  # the `fast` extra
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the install
    _orjson = None  # type: ignore[assignment]

ORJSON_MARK = "i64"
"""The mark's name (its value is 1): every integer in the marked data fits 64 bits."""
LEGACY_RESULT_MARK = "n64"
"""The mark result entries carried before it was unified with ORJSON_MARK; still read, so entries
written by workers of the previous version decode with orjson too (see docs/architecture.md)."""


def dumps(value: Any) -> bytes | None:
    """orjson's compact JSON of `value`; None when orjson is missing or refuses it (an integer
    beyond 64 bits, a non-string key, a lone surrogate): the caller then writes plain JSON, unmarked."""
    if _orjson is None:
        return None
    try:
        return _orjson.dumps(value)
    except TypeError:
        return None


def loads(raw: bytes | str, marked: bool) -> Any:
    """Read JSON: with orjson when `marked` (orjson wrote it), with json otherwise or when orjson
    finds it malformed (json then reports the error)."""
    if marked and _orjson is not None:
        try:
            return _orjson.loads(raw)
        except ValueError:
            pass
    return json.loads(raw)
