"""A Sentinel client's connections follow the master on every reconnection: two real redis-servers stand
in for the old and the new master, and the sentinels' answer is switched from one to the other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common.connection import connect
from common.direct import DirectConnection
from common.settings import Settings
from dispatcher.local import EmbeddedRedis


@pytest.fixture
def two_servers() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    old, new = EmbeddedRedis().start(), EmbeddedRedis().start()
    try:
        yield old, new
    finally:
        old.stop()
        new.stop()


def _client_pointing_at(server: EmbeddedRedis) -> tuple[redis.Redis, list[int]]:
    """A client from a Sentinel URL whose sentinels (stubbed) name `answer[0]` as the master."""
    client = connect(Settings(redis_url="redis+sentinel://127.0.0.1:1/main/0"))
    answer = [server.port]
    manager = client.connection_pool.sentinel_manager  # type: ignore[attr-defined]
    manager.discover_master = lambda _name: ("127.0.0.1", answer[0])
    return client, answer


def test_a_retried_command_reconnects_to_the_new_master(two_servers: tuple[EmbeddedRedis, EmbeddedRedis]) -> None:
    old, new = two_servers
    client, answer = _client_pointing_at(old)
    client.set("where", "old")
    try:
        connection = client.connection_pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        connection = client.connection_pool.get_connection("GET")  # type: ignore[call-arg,unused-ignore]
    answer[0] = new.port  # the failover: the sentinels now name the other server
    connection.disconnect()  # the old master's socket is gone; redis-py reconnects by itself on send
    connection.send_command("GET", "where")
    assert connection.read_response() is None, "reconnected to the old master's address"
    assert connection.port == new.port
    client.connection_pool.release(connection)


def test_the_workers_held_link_reconnects_to_the_new_master(two_servers: tuple[EmbeddedRedis, EmbeddedRedis]) -> None:
    old, new = two_servers
    client, answer = _client_pointing_at(old)
    link = DirectConnection(client)
    assert link.call("SET", "where", "old") == b"OK"
    answer[0] = new.port
    old.stop()  # the master dies under the held connection
    with pytest.raises(redis.ConnectionError):
        link.call("GET", "where")
    assert link.call("GET", "where") is None  # the next call: the new master
    link.close()
