"""A worker started by hand under the name of a dead one does not inherit the dead one's executions
(RQ 3), so `dispatcher status` does not show it running a chunk it never took."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from common import keys
from dispatcher.local import stop
from tests.conftest import WorkerFactory
from tests.integration.test_worker_namesake import (
    HANG_GUARD,
    kill_worker,
    registered_by_other_than,
    start_replacement,
)
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_a_replacement_by_hand_starts_with_no_execution(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    executions = keys.rq_worker_executions_key("heir")
    if executions is None:
        pytest.skip("RQ 2 names the running job in the worker's hash, which the replacement rewrites")
    first = start_worker("--name", "heir")
    old_pid = kill_worker(real_client, first, "heir")  # supervisor too: nobody hands its work back
    real_client.sadd(executions, "0123456789abcdef-0:deadexecution")  # it died running a chunk

    replacement, log = start_replacement(redis_url, tmp_path, "heir")
    try:
        wait_until(
            lambda: registered_by_other_than(real_client, "heir", old_pid) or replacement.poll() is not None,
            HANG_GUARD,
            "the replacement to register",
        )
        assert registered_by_other_than(real_client, "heir", old_pid), log.read_text(errors="replace")
        assert b"0123456789abcdef-0:deadexecution" not in real_client.smembers(executions)  # type: ignore[operator]
    finally:
        stop(replacement, grace=10)
