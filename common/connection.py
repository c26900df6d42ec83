"""The one place that builds a Redis client, and the one place that explains why it failed."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.errors import ConfigurationError, RedisUnavailable
from common.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client
from common.settings import Settings

DEFAULT_SOCKET_TIMEOUT = 30.0
"""Seconds a single command may take; every blocking read of ours blocks for far less than this."""


COMMAND_RETRIES = 2
"""Times redis-py re-sends a command after a connection error before raising it to us."""


_SECRET_QUERY = re.compile(r"((?:^|[?&])[a-z_]*password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with its passwords replaced by '***', safe to print and log."""
    if is_sentinel_url(url):  # several hosts: urlsplit cannot take the netloc apart
        head, sep, rest = url.partition("://")
        rest, qmark, query = rest.partition("?")
        netloc, slash, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
        query = _SECRET_QUERY.sub(r"\1***", query)
        return f"{head}{sep}{netloc}{slash}{path}{qmark}{query}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(
    settings: Settings, *, socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT, client_name: str | None = None
) -> redis.Redis:
    """Build a Redis client from the settings' URL (the connection opens on first use).

    redis-py 8 defaults to a 5 s socket timeout, shorter than a worker's or a dispatcher's blocking
    reads; an explicit timeout keeps a dead network from hanging a process forever. It also retries
    a failed command 10 times, so behind a silently dropped link one command could hang for minutes;
    two quick retries ride out a blip, and our own loops (worker reconnect, dispatcher outage grace)
    handle a real outage with their own back-off.

    A redis+sentinel:// URL gives a client on redis-py's Sentinel connection pool (common.sentinel):
    the same options, the master found through the sentinels on every (re)connection, so the same
    loops ride out a failover. Raw connections taken from its pool (dispatcher.direct, the worker's
    Link) follow the master too: every socket connect looks the master up.

    With `client_name`, every connection of the client names itself so (CLIENT SETNAME) as it opens,
    reconnections included, so CLIENT LIST shows which processes are connected.
    """
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 10.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), COMMAND_RETRIES),
    }
    if client_name is not None:
        options["client_name"] = client_name
    try:
        if is_sentinel_url(settings.redis_url):
            target = parse_sentinel_url(settings.redis_url, settings.sentinel_password)
            client: redis.Redis = sentinel_client(target, options)
            return client
        return redis.Redis.from_url(settings.redis_url, **options)
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {redact_url(settings.redis_url)}: {exc}") from None


def describe_redis_error(url: str, exc: BaseException) -> RedisUnavailable:
    """Turn a redis-py error into one clear message that names the URL without its password."""
    text = str(exc).replace(url, redact_url(url))
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        reason = "authentication failed (check the user and password in the URL)"
    elif "SSL" in text or "certificate" in text.lower():
        reason = f"TLS handshake failed: {text}"
    else:
        reason = text or type(exc).__name__
    return RedisUnavailable(f"cannot use Redis at {redact_url(url)}: {reason}")


def check_connection(client: redis.Redis, settings: Settings) -> None:
    """PING Redis now, so an unreachable or refusing server is reported before any work starts."""
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise describe_redis_error(settings.redis_url, exc) from None


def is_out_of_memory(exc: BaseException) -> bool:
    """True if Redis refused a write because it is at `maxmemory` with nothing to evict.

    redis-py raises OutOfMemoryError for a plain command, but a refusal inside a script arrives as a
    generic ResponseError whose text carries Redis's `OOM` error.
    """
    return isinstance(exc, redis.OutOfMemoryError) or (
        isinstance(exc, redis.ResponseError) and "OOM command not allowed" in str(exc)
    )
