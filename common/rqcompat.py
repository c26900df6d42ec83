"""Which RQ is installed, and whether the worker's fast path (worker/lean*.py) may run on it.

The fast path writes RQ's records (the worker's start and finish scripts, the dispatcher's enqueue
template, the quick job restore) without RQ's code. tests/integration/test_rq_differential.py proves,
for each RQ series listed in VERIFIED_SERIES, that those writes leave Redis exactly as RQ's own
methods do. On any other RQ the worker takes RQ's own path and says why once in its log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rq.version import VERSION

RQ_VERSION: tuple[int, ...] = tuple(int(part) for part in VERSION.split(".")[:3] if part.isdigit())
"""The installed RQ's version numbers (major, minor, patch)."""

RQ3: bool = RQ_VERSION >= (3,)
"""RQ 3 or later: executions in the worker's hash are gone (a set of executions instead), new method signatures."""

VERIFIED_SERIES: frozenset[tuple[int, int]] = frozenset({(2, 12), (3, 0)})
"""The RQ (major, minor) series the differential test covers (CI runs it on the newest of each)."""

FAST_PATH_ENV = "DW_RQ_FAST_PATH"
"""Environment variable: `0` makes workers use RQ's own per-job path on any RQ (differential test, bench)."""


def fast_path_refusal(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the worker must take RQ's own per-job path; None when the fast path may run."""
    env = os.environ if environ is None else environ
    value = env.get(FAST_PATH_ENV, "1").strip().lower()
    if value in ("0", "false", "no", "off"):
        return f"{FAST_PATH_ENV}={env[FAST_PATH_ENV]}"
    if value not in ("1", "true", "yes", "on", ""):
        from common.errors import ConfigurationError

        raise ConfigurationError(f"{FAST_PATH_ENV}={env[FAST_PATH_ENV]!r} is not a yes/no value (1/0, true/false)")
    series = RQ_VERSION[:2]
    if series not in VERIFIED_SERIES:
        verified = ", ".join(f"{major}.{minor}" for major, minor in sorted(VERIFIED_SERIES))
        return f"RQ {VERSION} is not a series the fast path was verified against ({verified})"
    return None
