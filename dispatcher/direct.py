"""One pooled Redis connection held for a latency-sensitive caller, used one round trip at a time.

redis-py spends about 70 µs of Python on a pipeline of two commands, mostly on things a held
connection does not need (taking and returning a pool connection, retry wrappers, metrics hooks, a
pipeline object); sending the packed commands and reading the replies on a connection kept open
costs about a third of that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import Connection
from redis.exceptions import ResponseError

try:  # the `fast` extra: one C call per command instead of redis-py's per-argument Python
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - depends on the install
    _pack_command = None  # type: ignore[assignment]


class DirectConnection:
    """Sends groups of commands in one write on one connection taken from `client`'s pool.

    Nothing is retried here: a connection error disconnects (no reply is ever left unread on a
    connection used again) and is raised for the caller to fall back to the client's own path. The
    connection then goes back to the pool, and the next round trip takes one through the pool's
    connect step, which on a Sentinel pool asks the sentinels where the master is now.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._conn: Connection | None = None

    def round_trip(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send `commands` together and return their raw replies in order; an error reply is
        returned as its ResponseError, not raised, so every reply is read."""
        conn = self._conn
        if conn is None:
            pool = self.client.connection_pool
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py before 5.3 wants a command name
                conn = pool.get_connection("PING")
            self._conn = conn
        try:
            if _pack_command is not None:
                packed: Any = [b"".join([_pack_command(tuple(command)) for command in commands])]
            else:
                packed = conn.pack_commands(commands)
            conn.send_packed_command(packed)  # type: ignore[no-untyped-call]
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            self.close()
            raise
        return replies

    def parse(self, command: str, reply: Any) -> Any:
        """A raw reply as the client's own call of `command` would have returned it."""
        return self.client.response_callbacks[command](reply)

    def close(self) -> None:
        """Give the connection back to the client's pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self.client.connection_pool.release(conn)
