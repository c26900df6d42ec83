"""One pooled Redis connection held for a latency-sensitive caller, used one round trip at a time.

The dispatcher's session (several commands and a blocking read in one write) and the worker's per-job
commands (the pop, the start and finish scripts) use it. redis-py spends most of a command's Python on
things a held connection does not need: taking and returning a pool connection, retry wrappers,
metrics hooks, a pipeline object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

try:  # the `fast` extra: one C call per command instead of redis-py's per-argument Python
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - depends on the install
    _pack_command = None  # type: ignore[assignment]


class DirectConnection:
    """Sends commands on one connection taken from `client`'s pool, kept until `close`.

    Nothing is retried here: any error other than an error reply disconnects (no reply is ever left
    unread on a connection used again) and is raised, for the caller's own fallback or outage
    handling; the next call takes a fresh connection.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None:
            pool = self.client.connection_pool
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py before 5.3 wants a command name
                conn = pool.get_connection("PING")  # type: ignore[call-arg,unused-ignore]
            self._conn = conn
        return conn

    def _send(self, conn: Connection, commands: Sequence[Sequence[Any]]) -> None:
        if _pack_command is not None:  # redis-py's packer copies every argument through a generator first
            packed: Any = [b"".join([_pack_command(tuple(command)) for command in commands])]
        else:
            packed = conn.pack_commands(commands)
        conn.send_packed_command(packed)  # type: ignore[no-untyped-call]

    def round_trip(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send `commands` together and return their raw replies in order; an error reply is
        returned as its ResponseError, not raised, so every reply is read."""
        conn = self._connection()
        try:
            self._send(conn, commands)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            self.close()  # the next round trip connects afresh: on a Sentinel pool, to the master now
            raise
        return replies

    def call(self, *args: Any) -> Any:
        """Send one command and return its raw reply; an error reply raises, as in redis-py."""
        conn = self._connection()
        try:
            self._send(conn, (args,))
            return conn.read_response()
        except ResponseError:
            raise  # the reply was read: the connection stays usable
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise

    def blpop(self, keys: list[str], timeout: int) -> Any:
        """BLPOP on this connection, for RQ's Queue.lpop (several queues): the pop and what follows it
        then share one connection, so a connection that died with a Redis restart fails at the pop,
        before a job is taken, instead of after it."""
        return self.call("BLPOP", *keys, timeout)

    def lpop(self, key: str) -> Any:
        """LPOP on this connection, for RQ's Queue.lpop without a timeout."""
        return self.call("LPOP", key)

    def script(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA a redis-py Script; EVAL once if the server does not have it (after a restart)."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.call("EVAL", script.script, len(keys), *keys, *args)

    def parse(self, command: str, reply: Any) -> Any:
        """A raw reply as the client's own call of `command` would have returned it."""
        return self.client.response_callbacks[command](reply)

    def close(self) -> None:
        """Give the connection back to the client's pool."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self.client.connection_pool.release(conn)
