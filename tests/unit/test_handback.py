"""Hand-back (worker.handback): unregistering a gone worker spares a namesake registered since."""

from __future__ import annotations

import fakeredis

from common import keys
from worker.handback import unregister


def _register(client: fakeredis.FakeRedis, name: str, birth: str) -> None:
    client.hset(keys.RQ_WORKER_PREFIX + name, mapping={"birth": birth})
    client.sadd(keys.RQ_WORKERS, keys.RQ_WORKER_PREFIX + name)


def test_a_gone_worker_is_unregistered(fake_client: fakeredis.FakeRedis) -> None:
    _register(fake_client, "gone", "2026-01-01T00:00:00Z")
    unregister(fake_client, {"gone": b"2026-01-01T00:00:00Z"})
    assert not fake_client.exists(keys.RQ_WORKER_PREFIX + "gone")
    assert fake_client.smembers(keys.RQ_WORKERS) == set()


def test_a_namesake_born_since_is_kept(fake_client: fakeredis.FakeRedis) -> None:
    _register(fake_client, "w", "2026-01-01T00:00:05Z")  # a replacement under the same name
    unregister(fake_client, {"w": b"2026-01-01T00:00:00Z", "never": None})
    assert fake_client.hget(keys.RQ_WORKER_PREFIX + "w", "birth") == b"2026-01-01T00:00:05Z"
    assert fake_client.smembers(keys.RQ_WORKERS) == {(keys.RQ_WORKER_PREFIX + "w").encode()}
