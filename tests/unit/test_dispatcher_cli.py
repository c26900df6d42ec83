"""The `dispatcher` CLI in-process (click's CliRunner) on fakeredis: every exit code, and where each
setting comes from (option, else environment variable, else default)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from common import keys
from common.errors import BatchInterrupted, ConfigurationError
from common.settings import SETTINGS, Settings
from common.wire import TaskSpec
from dispatcher.cli import main
from dispatcher.submit import BatchSubmitter
from tests.clirunner import invoke
from tests.unit.test_pipeline_fakeredis import run_worker

ENV_OF = {name: row.env for name, row in SETTINGS.items()}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting comes from the environment of the test run."""
    for env in ENV_OF.values():
        monkeypatch.delenv(env, raising=False)


@pytest.fixture
def redis_of(clean_env: None, monkeypatch: pytest.MonkeyPatch, fake_client: fakeredis.FakeRedis) -> Iterator[list[str]]:
    """Every client the CLI opens is `fake_client`; yields the URLs it was asked for."""
    urls: list[str] = []

    def connect(settings: Settings, **_: Any) -> fakeredis.FakeRedis:
        urls.append(settings.redis_url)
        return fake_client

    monkeypatch.setattr("common.connection.connect", connect)
    yield urls


def batch_file(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "tasks.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def submitted(tmp_path: Path, *lines: str) -> str:
    """The id of a batch submitted with --no-wait (which exits 0)."""
    done = invoke(main, ["submit", batch_file(tmp_path, *lines), "--no-wait", "--no-check"])
    assert done.exit_code == 0, done.stderr
    return done.stdout.strip()


def test_0_every_task_succeeded(redis_of: list[str], fake_client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    batch_id = submitted(tmp_path, "add 1 2", "add 3 4")
    run_worker(fake_client, Settings.from_env({}))
    done = invoke(main, ["results", batch_id, "--json"])
    assert done.exit_code == 0, done.stderr
    assert f"batch {batch_id}: 2 tasks, 2 ok, 0 failed" in done.stderr


def test_1_some_tasks_failed(redis_of: list[str], fake_client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    batch_id = submitted(tmp_path, "add 1 2", "divide 1 0")
    run_worker(fake_client, Settings.from_env({}))
    done = invoke(main, ["results", batch_id])
    assert done.exit_code == 1
    assert "1 ok, 1 failed" in done.stderr


def test_1_a_malformed_line_fails_alone(redis_of: list[str], tmp_path: Path) -> None:
    done = invoke(main, ["submit", batch_file(tmp_path, "add 1 'oops"), "--no-check", "--json"])
    assert done.exit_code == 1
    assert '"MalformedInput"' in done.stdout


def test_2_usage_errors(redis_of: list[str], tmp_path: Path) -> None:
    assert invoke(main, ["nosuchcommand"]).exit_code == 2
    assert invoke(main, ["submit", str(tmp_path / "missing.txt")]).exit_code == 2
    refused = invoke(main, ["submit", batch_file(tmp_path, "add 1 2"), "--result-ttl", "0"])
    assert refused.exit_code == 2 and "--result-ttl" in refused.stderr


def test_2_an_unknown_batch(redis_of: list[str]) -> None:
    done = invoke(main, ["results", "nosuchbatch"])
    assert done.exit_code == 2
    assert done.stderr.startswith("dispatcher: ") and "nosuchbatch" in done.stderr


def test_2_strict_refuses_a_malformed_line(
    redis_of: list[str], fake_client: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    done = invoke(main, ["submit", batch_file(tmp_path, "add 1 2", "add 1 'oops"), "--strict", "--no-check"])
    assert done.exit_code == 2 and "dispatcher: line 2" in done.stderr
    assert fake_client.llen(keys.rq_queue_key("tasks")) == 0


def test_2_a_batch_over_its_limit(redis_of: list[str], fake_client: fakeredis.FakeRedis, tmp_path: Path) -> None:
    lines = [f"add {i} 1" for i in range(5)]
    done = invoke(main, ["submit", batch_file(tmp_path, *lines), "--no-check", "--max-batch-tasks", "3"])
    assert done.exit_code == 2 and "over the limit of 3" in done.stderr


def test_2_a_bad_environment_variable(redis_of: list[str]) -> None:
    done = invoke(main, ["status"], env={"DW_HEARTBEAT_TTL": "soon"})
    assert done.exit_code == 2 and "DW_HEARTBEAT_TTL='soon'" in done.stderr


def test_3_redis_unreachable_without_the_password(clean_env: None) -> None:
    done = invoke(main, ["status", "--redis-url", "redis://:s3cret@127.0.0.1:1/0"])
    assert done.exit_code == 3
    assert done.stderr.startswith("dispatcher: ") and "127.0.0.1:1" in done.stderr
    assert "s3cret" not in done.stderr


def test_4_timed_out(redis_of: list[str], tmp_path: Path) -> None:
    batch_id = submitted(tmp_path, "add 1 2")  # no worker runs it
    done = invoke(main, ["results", batch_id, "--timeout", "0.2"])
    assert done.exit_code == 4
    assert f"dispatcher results {batch_id}" in done.stderr


def test_5_the_input_was_not_all_submitted(redis_of: list[str], fake_client: fakeredis.FakeRedis) -> None:
    submitter = BatchSubmitter(fake_client, Settings.from_env({}), "b5", chunk_size=1)
    submitter.start("test")
    submitter.add_chunk([TaskSpec(0, "add", [0, 1])], auto_flush=False)
    submitter.flush()
    submitter.add_chunk([TaskSpec(1, "add", [1, 1])], auto_flush=False)  # read, never sent
    submitter.abort("interrupted")
    run_worker(fake_client, Settings.from_env({}))
    done = invoke(main, ["results", "b5"])
    assert done.exit_code == 5
    assert "1 tasks, 1 ok, 0 failed" in done.stderr


def test_130_interrupted(redis_of: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("dispatcher.status.collect_status", interrupted)
    done = invoke(main, ["status"])
    assert (done.exit_code, done.stderr) == (130, "dispatcher: interrupted\n")


def test_130_interrupted_with_a_batch_in_flight(
    redis_of: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def interrupted(*_: Any, **__: Any) -> None:
        raise BatchInterrupted("interrupted; batch b1 goes on: `dispatcher results b1`")

    monkeypatch.setattr("dispatcher.batch.submit_batch", interrupted)
    done = invoke(main, ["submit", batch_file(tmp_path, "add 1 2"), "--no-check"])
    assert done.exit_code == 130
    assert done.stderr.endswith("dispatcher: interrupted; batch b1 goes on: `dispatcher results b1`\n")


def test_141_stdout_closed(redis_of: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(*_: Any) -> None:
        raise BrokenPipeError

    monkeypatch.setattr("dispatcher.status.collect_status", closed)
    done = invoke(main, ["status", "--json"])
    assert (done.exit_code, done.stderr) == (141, "")


def test_74_the_output_could_not_be_written(redis_of: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dispatcher.status.collect_status", full_disk)
    done = invoke(main, ["status", "--json"])
    assert (done.exit_code, done.stderr) == (74, "dispatcher: cannot write the output: No space left on device\n")


# Where settings come from: the option, else the environment variable, else the default.


@pytest.fixture
def settings_of_submit(redis_of: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Runs `submit` with the given arguments and environment; returns the Settings it built."""
    built: list[Settings] = []

    def stop_here(settings: Settings) -> None:
        built.append(settings)
        raise ConfigurationError("stopped by the test")

    monkeypatch.setattr("dispatcher.cli_report.open_redis", stop_here)
    source = batch_file(tmp_path, "add 1 2")

    def run(*args: str, **env: str) -> Settings:
        done = invoke(main, ["submit", source, *args], env=env)
        assert done.exit_code == 2 and "stopped by the test" in done.stderr, done.stderr
        return built.pop()

    return run


@pytest.mark.parametrize(
    ("name", "option", "from_option", "from_env"),
    [
        ("redis_url", "--redis-url", "redis://option:6379/1", "redis://env:6379/2"),
        ("queue", "--queue", "optq", "envq"),
        ("result_ttl", "--result-ttl", 111, 222),
        ("max_arg_bytes", "--max-arg-bytes", 333, 444),
    ],
)
def test_an_option_beats_its_variable_which_beats_the_default(
    settings_of_submit: Any, name: str, option: str, from_option: object, from_env: object
) -> None:
    env = {ENV_OF[name]: str(from_env)}
    assert getattr(settings_of_submit(), name) == SETTINGS[name].default
    assert getattr(settings_of_submit(**env), name) == from_env
    assert getattr(settings_of_submit(option, str(from_option), **env), name) == from_option
    assert getattr(settings_of_submit(option, str(from_option)), name) == from_option


def test_settings_without_an_option_come_from_their_variable(settings_of_submit: Any) -> None:
    assert settings_of_submit(DW_HEARTBEAT_TTL="12").heartbeat_ttl == 12
    assert settings_of_submit().heartbeat_ttl == SETTINGS["heartbeat_ttl"].default


def test_the_url_of_the_connection_is_the_option_s(redis_of: list[str]) -> None:
    done = invoke(
        main, ["status", "--json", "--redis-url", "redis://option:6379/3"], env={"REDIS_URL": "redis://env:1/0"}
    )
    assert done.exit_code == 0, done.stderr
    assert redis_of == ["redis://option:6379/3"]
