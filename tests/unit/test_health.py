"""`worker --check` logic on fakeredis: which registered workers count as this host's live ones."""

from __future__ import annotations

import datetime
import socket

import fakeredis
import pytest
from click.testing import CliRunner
from rq.utils import utcformat

from common import default_catalogue
from common.settings import Settings
from worker import cli
from worker.health import (
    CHECK_HEALTHY,
    CHECK_NO_WORKER,
    CHECK_STALE,
    check_host,
    heartbeat_max_age,
    registered_workers,
)
from worker.runner import FastChunkWorker
from worker.runtime import Runtime

UTC = datetime.timezone.utc


def register(client: fakeredis.FakeRedis, settings: Settings, name: str) -> FastChunkWorker:
    """A worker registered exactly as a real one registers itself at start."""
    worker = FastChunkWorker(Runtime(settings, default_catalogue, name), client, [settings.queue])
    worker.register_birth()
    worker.stop_heartbeat()  # these tests write the heartbeats themselves
    return worker


def test_a_freshly_registered_worker_of_this_host_is_healthy(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    register(fake_client, fake_settings, "w1")
    result = check_host(fake_client, socket.gethostname())
    assert result.code == CHECK_HEALTHY
    assert [w.name for w in result.workers] == ["w1"]
    assert "w1" in result.message


def test_no_registered_worker_means_no_worker(fake_client: fakeredis.FakeRedis) -> None:
    result = check_host(fake_client, socket.gethostname())
    assert result.code == CHECK_NO_WORKER
    assert result.workers == ()


def test_a_worker_of_another_host_does_not_count(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    register(fake_client, fake_settings, "elsewhere")
    assert check_host(fake_client, socket.gethostname()).code == CHECK_HEALTHY
    result = check_host(fake_client, "some-other-container")
    assert result.code == CHECK_NO_WORKER
    assert "some-other-container" in result.message


def test_a_worker_that_stopped_heartbeating_is_stale(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    worker = register(fake_client, fake_settings, "hung")
    long_ago = datetime.datetime.now(UTC) - datetime.timedelta(minutes=5)
    fake_client.hset(worker.key, "last_heartbeat", utcformat(long_ago))
    result = check_host(fake_client, socket.gethostname())
    assert result.code == CHECK_STALE
    assert "hung" in result.message


def test_one_live_worker_among_stale_ones_is_enough(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    stale = register(fake_client, fake_settings, "a")
    register(fake_client, fake_settings, "b")
    fake_client.hset(stale.key, "last_heartbeat", utcformat(datetime.datetime.now(UTC) - datetime.timedelta(hours=1)))
    result = check_host(fake_client, socket.gethostname())
    assert result.code == CHECK_HEALTHY
    assert "1 of 2" in result.message


def test_heartbeat_age_is_measured_from_the_recorded_heartbeat(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    worker = register(fake_client, fake_settings, "w")
    beat = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    fake_client.hset(worker.key, "last_heartbeat", utcformat(beat))
    (seen,) = registered_workers(fake_client, beat + datetime.timedelta(seconds=42))
    assert seen.heartbeat_age == pytest.approx(42.0)
    assert (
        check_host(fake_client, socket.gethostname(), max_age=41.0, now=beat + datetime.timedelta(seconds=42)).code
        == CHECK_STALE
    )
    assert (
        check_host(fake_client, socket.gethostname(), max_age=43.0, now=beat + datetime.timedelta(seconds=42)).code
        == CHECK_HEALTHY
    )


def test_a_worker_that_registered_its_death_is_gone(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    worker = register(fake_client, fake_settings, "w")
    worker.register_death()
    assert check_host(fake_client, socket.gethostname()).code == CHECK_NO_WORKER


def test_an_expired_worker_hash_is_not_alive(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    worker = register(fake_client, fake_settings, "w")
    fake_client.delete(worker.key)  # what its TTL does when a killed worker stops heartbeating
    assert registered_workers(fake_client, datetime.datetime.now(UTC)) == []
    assert check_host(fake_client, socket.gethostname()).code == CHECK_NO_WORKER


@pytest.mark.parametrize("heartbeat_ttl", [1, 10, 30, 120])
def test_an_idle_worker_heartbeats_well_within_the_allowed_age(
    fake_client: fakeredis.FakeRedis, heartbeat_ttl: int
) -> None:
    settings = Settings.from_env({}, heartbeat_interval=heartbeat_ttl / 4, heartbeat_ttl=heartbeat_ttl)
    worker = register(fake_client, settings, f"idle-{heartbeat_ttl}")
    # RQ heartbeats an idle worker each time its blocking dequeue times out.
    assert heartbeat_max_age(settings) >= 2 * worker.dequeue_timeout


def test_check_reports_an_unreachable_redis_with_exit_code_3() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        result = CliRunner().invoke(cli.main, ["--check", "--redis-url", f"redis://:s3cret@127.0.0.1:{port}/0"])
    assert result.exit_code == 3
    assert "s3cret" not in result.output
    assert "cannot use Redis" in result.output


def test_check_reports_a_bad_url_as_a_usage_error() -> None:
    result = CliRunner().invoke(cli.main, ["--check", "--redis-url", "nosuchscheme://x"])
    assert result.exit_code == 2
