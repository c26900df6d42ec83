"""Sentinel URLs: parsing, redaction, the client they build, RQ CLI settings, the durable option's WAIT."""

from __future__ import annotations

import logging

import pytest
import redis
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from common.connection import connect, redact_url
from common.durability import ReplicaWait
from common.errors import ConfigurationError
from common.rq_settings import rq_settings
from common.sentinel import is_sentinel_url, parse_sentinel_url
from common.settings import Settings


def test_full_url_is_read() -> None:
    target = parse_sentinel_url("redis+sentinel://app:s%40cret@s1:26380,s2,[::1]:26381/main/3?sentinel_password=sp")
    assert target.sentinels == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert (target.master, target.db, target.username, target.password) == ("main", 3, "app", "s@cret")
    assert (target.sentinel_username, target.sentinel_password, target.tls) == (None, "sp", False)


def test_sentinel_password_from_the_settings_unless_the_url_has_one() -> None:
    assert parse_sentinel_url("redis+sentinel://s1/m", "env").sentinel_password == "env"
    assert parse_sentinel_url("redis+sentinel://s1/m?sentinel_password=url", "env").sentinel_password == "url"
    assert parse_sentinel_url("redis+sentinel://s1/m").sentinel_password is None
    assert Settings.from_env({"DW_SENTINEL_PASSWORD": "zq9"}).sentinel_password == "zq9"
    assert "zq9" not in repr(Settings.from_env({"DW_SENTINEL_PASSWORD": "zq9"}))


def test_tls_form() -> None:
    target = parse_sentinel_url("rediss+sentinel://s1:1/m?ssl_ca_certs=/ca.pem&ssl_check_hostname=false")
    assert target.tls and target.tls_options == {"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": False}


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel:///m",  # no sentinel
        "redis+sentinel://s1",  # no master name
        "redis+sentinel://s1/m/x",  # db not a number
        "redis+sentinel://s1/m/0/extra",
        "redis+sentinel://s1:notaport/m",
        "redis+sentinel://s1:70000/m",
        "redis+sentinel://s1/m?bogus=1",
        "redis+sentinel://s1/m?ssl_ca_certs=/x",  # TLS options without TLS
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_sentinel_url(url)
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        connect(Settings(redis_url=url))


def test_redaction_hides_both_passwords() -> None:
    url = "redis+sentinel://u:master-pw@s1:1,s2:2/m/0?sentinel_password=sent-pw"
    shown = redact_url(url)
    assert "master-pw" not in shown and "sent-pw" not in shown
    assert shown == "redis+sentinel://u:***@s1:1,s2:2/m/0?sentinel_password=***"
    assert is_sentinel_url(url) and not is_sentinel_url("redis://h/0")


def test_client_is_on_a_sentinel_pool_with_our_options() -> None:
    client = connect(Settings(redis_url="rediss+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/main/2?sentinel_password=sp"))
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "main" and issubclass(pool.connection_class, SentinelManagedSSLConnection)
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (2, "pw", 30.0)
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    assert all(s.connection_pool.connection_kwargs["password"] == "sp" for s in sentinels)


def test_no_sentinel_answering_is_a_connection_error() -> None:
    client = connect(Settings(redis_url="redis+sentinel://127.0.0.1:1/main"))
    with pytest.raises(redis.ConnectionError, match="No master found"):
        client.ping()


def test_rq_cli_settings() -> None:
    assert rq_settings("redis://h:1/0") == {"REDIS_URL": "redis://h:1/0"}
    sentinel = rq_settings("redis+sentinel://:pw@s1:1,s2:2/main/4", "sp")["SENTINEL"]
    assert sentinel["INSTANCES"] == [("s1", 1), ("s2", 2)]
    assert (sentinel["MASTER_NAME"], sentinel["DB"], sentinel["PASSWORD"]) == ("main", 4, "pw")
    assert sentinel["SENTINEL_KWARGS"]["password"] == "sp"


def test_replica_wait(caplog: pytest.LogCaptureFixture) -> None:
    assert ReplicaWait.from_settings(Settings()) is None
    settings = Settings.from_env({"DW_MIN_REPLICAS": "2", "DW_MIN_REPLICAS_TIMEOUT": "1.5"})
    wait = ReplicaWait.from_settings(settings)
    assert wait is not None and wait.command == ["WAIT", 2, 1500]
    assert wait.check(2, "x")
    with caplog.at_level(logging.WARNING):
        assert not wait.check(1, "batch b: results")
    assert "only 1 of 2 replica(s)" in caplog.text
    with pytest.raises(ConfigurationError):
        Settings.from_env({"DW_MIN_REPLICAS": "-1"})
