"""Hand-back (worker.handback): a gone worker leaves no execution behind for a namesake to inherit."""

from __future__ import annotations

import fakeredis
import pytest

from common import keys
from worker.handback import unregister

BIRTH = b"2026-01-01T00:00:00Z"


def _executions_key(name: str) -> str:
    key = keys.rq_worker_executions_key(name)
    if key is None:
        pytest.skip("RQ 2 names the running job in the worker's hash, which unregistering deletes")
    return key


def test_a_gone_workers_executions_go_with_it(fake_client: fakeredis.FakeRedis) -> None:
    executions = _executions_key("w")
    fake_client.hset(keys.RQ_WORKER_PREFIX + "w", mapping={"birth": BIRTH})
    fake_client.sadd(keys.RQ_WORKERS, keys.RQ_WORKER_PREFIX + "w")
    fake_client.sadd(executions, "b1-0:e1")  # it died running chunk 0 of batch b1
    unregister(fake_client, {"w": BIRTH})
    # Else a replacement under the same name (the supervisor's) inherits the entry, and
    # `dispatcher status` shows it running that chunk, idle, for as long as it lives.
    assert not fake_client.exists(executions)


def test_a_namesake_born_since_keeps_its_executions(fake_client: fakeredis.FakeRedis) -> None:
    executions = _executions_key("w")
    fake_client.hset(keys.RQ_WORKER_PREFIX + "w", mapping={"birth": "2026-01-01T00:00:05Z"})
    fake_client.sadd(executions, "b2-0:e2")  # the replacement runs a chunk
    unregister(fake_client, {"w": BIRTH})
    assert fake_client.smembers(executions) == {b"b2-0:e2"}
