"""The `worker` CLI in-process (click's CliRunner) on a real redis-server: every exit code, including
errors raised while serving, in this process and in a supervised one."""

from __future__ import annotations

import datetime
import gc
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.utils import utcformat

from common import keys
from common.errors import ConfigurationError, RedisUnavailable
from common.settings import SETTINGS
from tests.clirunner import invoke
from worker import runner, runtime
from worker.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def contained(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a worker does to its own process (signal handlers, the runtime, the collector's tuning)
    is undone after each test, and no setting comes from the environment of the test run."""
    for row in SETTINGS.values():
        monkeypatch.delenv(row.env, raising=False)
    monkeypatch.setattr(runtime, "_current", runtime._current)
    monkeypatch.setattr("worker.cli.tune_long_running_process", lambda: None)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    runner._early_stop.clear()
    gc.unfreeze()  # the supervisor freezes what its children inherit


def worker(*args: str) -> Any:
    return invoke(main, ["--burst", "--quiet", "--name", "cli-test", *args])


def raising(error: BaseException) -> Any:
    def fail(*_: Any, **__: Any) -> None:
        raise error

    return fail


def test_0_burst_on_empty_queues(redis_url: str) -> None:
    done = worker("--redis-url", redis_url)
    assert done.exit_code == 0, done.stderr
    assert done.stderr == ""


def test_1_its_name_is_taken_by_a_live_worker(redis_url: str, real_client: redis.Redis) -> None:
    prefix = keys.WORKER_FIELD_PREFIX
    fields = {f"{prefix}host": f"not-{socket.gethostname()}", f"{prefix}pid": "1", "state": "idle"}
    real_client.hset(keys.rq_worker_key("cli-test"), mapping=fields)
    done = worker("--redis-url", redis_url)
    assert done.exit_code == 1


def test_2_a_task_module_that_cannot_be_imported(redis_url: str) -> None:
    done = worker("--redis-url", redis_url, "--tasks", "no.such.module")
    assert done.exit_code == 2
    assert done.stderr.startswith("worker: ") and "cannot import task module" in done.stderr


def test_2_a_bad_option(redis_url: str) -> None:
    assert worker("--redis-url", redis_url, "--threads", "0").exit_code == 2
    refused = worker("--redis-url", redis_url, "--queue", "no spaces!")
    assert refused.exit_code == 2 and refused.stderr.startswith("worker: invalid queue name")


def test_3_redis_unreachable() -> None:
    done = worker("--redis-url", "redis://:s3cret@127.0.0.1:1/0", "--wait-for-redis", "0")
    assert done.exit_code == 3
    assert done.stderr.startswith("worker: ") and "s3cret" not in done.stderr


def test_130_interrupted_while_waiting_for_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.cli.await_redis", raising(KeyboardInterrupt()))
    done = worker("--redis-url", redis_url)
    assert (done.exit_code, done.stderr) == (130, "worker: interrupted\n")


@pytest.mark.parametrize(("error", "code"), [(ConfigurationError("bad slots"), 2), (RedisUnavailable("gone"), 3)])
def test_an_error_inside_serve_is_mapped(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, error: Exception, code: int
) -> None:
    monkeypatch.setattr("worker.cli.Runtime", raising(error))
    done = worker("--redis-url", redis_url)
    assert (done.exit_code, done.stderr) == (code, f"worker: {error}\n")


def test_an_error_inside_a_supervised_process_is_mapped(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each process exits with the error's code (without the edge there, multiprocessing would print
    # a traceback and exit 1); the supervisor exits with the worst.
    monkeypatch.setattr("worker.cli.Runtime", raising(RedisUnavailable("gone")))
    done = worker("--redis-url", redis_url, "--concurrency", "2")
    assert done.exit_code == 3


# Where settings come from: the option, else the environment variable, else the default.


@pytest.fixture
def settings_of_worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs `worker` with the given arguments and environment; returns the Settings and queues it built."""
    built: list[Any] = []

    def stop_here(settings: Any) -> None:
        built.append(settings)
        raise ConfigurationError("stopped by the test")

    monkeypatch.setattr("worker.cli.await_redis", stop_here)

    def run(*args: str, **env: str) -> Any:
        done = invoke(main, list(args), env=env)
        assert done.exit_code == 2 and "stopped by the test" in done.stderr, done.stderr
        return built.pop()

    return run


@pytest.mark.parametrize(
    ("name", "option", "from_option", "from_env"),
    [
        ("redis_url", "--redis-url", "redis://option:6379/1", "redis://env:6379/2"),
        ("task_timeout", "--task-timeout", 7.5, 8.5),
        ("crash_limit", "--crash-limit", 4, 5),
        ("wait_for_redis", "--wait-for-redis", 1.5, 2.5),
    ],
)
def test_an_option_beats_its_variable_which_beats_the_default(
    settings_of_worker: Any, name: str, option: str, from_option: object, from_env: object
) -> None:
    env = {SETTINGS[name].env: str(from_env)}
    assert getattr(settings_of_worker(), name) == SETTINGS[name].default
    assert getattr(settings_of_worker(**env), name) == from_env
    assert getattr(settings_of_worker(option, str(from_option), **env), name) == from_option
    assert getattr(settings_of_worker(option, str(from_option)), name) == from_option


# `worker --check`, the health probe: its own exit codes (worker.health), through the same edge.


def registered(client: redis.Redis, name: str, heartbeat_age: float) -> None:
    """A worker of this host in RQ's registry, whose last heartbeat is `heartbeat_age` seconds old."""
    beat = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=heartbeat_age)
    fields = {
        f"{keys.WORKER_FIELD_PREFIX}host": socket.gethostname(),
        "state": "idle",
        "last_heartbeat": utcformat(beat),
    }
    client.hset(keys.rq_worker_key(name), mapping=fields)
    client.sadd(keys.RQ_WORKERS, keys.rq_worker_key(name))


@pytest.mark.parametrize(
    ("heartbeat_age", "code", "verdict"), [(None, 1, "unhealthy: "), (3600, 5, "unhealthy: "), (1, 0, "ok: ")]
)
def test_check(redis_url: str, real_client: redis.Redis, heartbeat_age: float | None, code: int, verdict: str) -> None:
    if heartbeat_age is not None:
        registered(real_client, "probed", heartbeat_age)
    done = invoke(main, ["--check", "--redis-url", redis_url])
    assert done.exit_code == code, done.output
    assert done.stdout.startswith(verdict)


def test_check_with_redis_unreachable() -> None:
    done = invoke(main, ["--check", "--redis-url", "redis://127.0.0.1:1/0"])
    assert done.exit_code == 3 and done.stderr.startswith("worker: ")
