"""Redis Sentinel URLs: `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/db]`.

The URL names the sentinels, not a Redis server: a client built from it asks them where the master
of MASTER_NAME is, and asks again after every connection error, so it follows a failover on its own.
The URL's user and password are the master's (as in a plain redis:// URL); the sentinels' own
password, which may differ, comes from the `sentinel_password` query parameter (and
`sentinel_username`), else from the settings (DW_SENTINEL_PASSWORD). `rediss+sentinel://` speaks
TLS to the sentinels and to the master, with redis-py's `ssl_*` query parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""Sentinel URL schemes, and whether each speaks TLS."""

DEFAULT_SENTINEL_PORT = 26379

SENTINEL_TIMEOUT = 5.0
"""Seconds one question to one sentinel may take before the next sentinel is asked."""

TLS_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"})
"""redis-py TLS options a rediss+sentinel URL may carry as query parameters (as a rediss:// URL does)."""


@dataclass(frozen=True)
class SentinelTarget:
    """What a Sentinel URL says: where the sentinels are, which master, and how to log in to each."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_options: dict[str, Any] = field(default_factory=dict)


def is_sentinel_url(url: str) -> bool:
    """True for a redis+sentinel:// or rediss+sentinel:// URL."""
    return url.partition("://")[0].lower() in SCHEMES


def parse_sentinel_url(url: str, sentinel_password: str = "") -> SentinelTarget:
    """Read a Sentinel URL; `sentinel_password` is used when the URL carries none. ValueError if malformed."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError("not a redis+sentinel:// or rediss+sentinel:// URL")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = [_host_port(entry) for entry in hosts.split(",") if entry.strip()]
    if not sentinels:
        raise ValueError("no sentinel host:port in the URL")
    parts = [unquote(part) for part in path.split("/") if part]
    if not parts:
        raise ValueError("no master name in the URL path (redis+sentinel://HOST:PORT/MASTER_NAME/DB)")
    if len(parts) > 2:
        raise ValueError("the URL path is /MASTER_NAME or /MASTER_NAME/DB")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ValueError(f"database {parts[1]!r} is not a number") from None
    options = dict(parse_qsl(query, keep_blank_values=True))
    tls_options: dict[str, Any] = {}
    for key in list(options):
        if key in TLS_OPTIONS:
            value = options.pop(key)
            tls_options[key] = value.lower() in ("1", "true", "yes") if key == "ssl_check_hostname" else value
    s_user = options.pop("sentinel_username", None) or None
    s_password = options.pop("sentinel_password", None) or sentinel_password or None
    if options:
        raise ValueError(f"unknown query parameter(s) {', '.join(sorted(options))}")
    tls = SCHEMES[scheme.lower()]
    if tls_options and not tls:
        raise ValueError("ssl_* parameters need the rediss+sentinel:// scheme")
    return SentinelTarget(sentinels, parts[0], db, username, password, s_user, s_password, tls, tls_options)


def _host_port(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if entry.startswith("["):  # [IPv6]:port
        host, _, tail = entry[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = entry.rpartition(":") if ":" in entry else (entry, "", "")
    if not host:
        raise ValueError(f"bad sentinel address {entry!r}")
    try:
        port = int(port_text) if port_text else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise ValueError(f"bad port in sentinel address {entry!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port in sentinel address {entry!r}")
    return host, port


class _FollowTheMaster:
    """Asks the sentinels for the master's address on every socket connect, not only on a pool's
    connect step: redis-py's SentinelManagedConnection looks the master up in `connect()`, but a
    connection that reconnects by itself (a command retried after a connection error, a held
    connection's next command) goes through `connect_check_health()`, straight back to the address
    it had. After a failover that is the old master, and once its host is back (restarted empty, or
    not yet turned into a replica) commands would read and write there: writes lost, chunks seen as
    vanished. Looking the address up in the socket connect covers every path."""

    connection_pool: Any
    host: Any
    port: Any

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()  # type: ignore[misc]

    def _connect_retry(self) -> None:
        # The address is looked up in _connect: once, not twice. redis-py before 5.3 has no
        # connect_check_health: its own _connect_retry goes through connect(), hence _connect, anyway.
        if self.connection_pool.is_master and hasattr(self, "connect_check_health"):
            check = self.connection_pool.check_connection
            self.connect_check_health(check_health=check, retry_socket_connect=False)  # type: ignore[attr-defined,unused-ignore]
        else:
            super()._connect_retry()  # type: ignore[misc]


@functools.cache
def _connection_classes() -> tuple[type, type]:
    """The plain and the TLS connection class (made once)."""
    from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

    class FollowingConnection(_FollowTheMaster, SentinelManagedConnection):
        pass

    class FollowingSSLConnection(_FollowTheMaster, SentinelManagedSSLConnection):
        pass

    return FollowingConnection, FollowingSSLConnection


def sentinel_client(target: SentinelTarget, options: dict[str, Any]) -> Any:
    """A redis.Redis for the target's master, on a redis.sentinel.SentinelConnectionPool: every
    connection and reconnection asks the sentinels for the master's address (_FollowTheMaster), and
    a connection that fails (or finds its server demoted to a replica) is dropped, so the next
    command reaches the new master."""
    from redis.sentinel import Sentinel

    tls: dict[str, Any] = {"ssl": True, **target.tls_options} if target.tls else {}
    plain, secure = _connection_classes()
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        **tls,
    }
    manager = Sentinel(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        target.master,
        connection_class=secure if target.tls else plain,
        db=target.db,
        username=target.username,
        password=target.password,
        **target.tls_options,
        **options,
    )
