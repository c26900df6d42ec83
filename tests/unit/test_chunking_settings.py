"""Chunk size choice, settings from the environment, and URL redaction."""

from __future__ import annotations

import pytest

from common.connection import redact_url
from common.errors import ConfigurationError
from common.settings import Settings
from dispatcher.chunking import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, auto_chunk_size, peek_total


def test_small_slow_batches_spread_over_all_slots() -> None:
    # 200 tasks, 2 processes x 10 slots: one chunk of 100 per process; it keeps its 10 slots busy
    # (slots balance inside a chunk; every chunk boundary idles the slots for its tail).
    assert auto_chunk_size(200, 2, 20) == 100
    # 2,000 tasks over 4 processes x 50 slots: one chunk of 500 per process.
    assert auto_chunk_size(2000, 4, 200) == 500
    # A multiple of the slots per process, however the total divides.
    assert auto_chunk_size(230, 2, 20) == 110
    assert auto_chunk_size(3, 2, 2) == 1


def test_large_batches_use_big_chunks() -> None:
    assert auto_chunk_size(10_000, 2, 2) == 625
    assert auto_chunk_size(1_000_000, 2, 2) == MAX_CHUNK_SIZE
    assert auto_chunk_size(None, 2, 2) == MAX_CHUNK_SIZE


def test_chunks_do_not_shrink_below_the_minimum_while_every_process_gets_one() -> None:
    # 50,000 tasks over 200 processes: 8 chunks each would be 31 tasks, whose job cost dominates.
    assert auto_chunk_size(50_000, 200, 200) == MIN_CHUNK_SIZE
    # ... unless the batch is too small to give each process a chunk of the minimum.
    assert auto_chunk_size(10_000, 200, 200) == 50
    assert auto_chunk_size(1_000, 200, 200) == 5
    assert auto_chunk_size(100, 200, 200) == 1
    # Few processes, large batch: 8 chunks each, as before; smaller batch: the minimum.
    assert auto_chunk_size(10_000, 2, 2) == 625
    assert auto_chunk_size(1_000, 2, 2) == MIN_CHUNK_SIZE
    # Thread slots: still a multiple of the slots per process.
    assert auto_chunk_size(2_000, 10, 30) % 3 == 0


def test_peek_total_knows_small_inputs_and_keeps_every_item() -> None:
    total, items = peek_total(range(10), limit=100)
    assert total == 10 and list(items) == list(range(10))
    total, items = peek_total(range(1000), limit=100)
    assert total is None and list(items) == list(range(1000))


def test_settings_from_environment_with_overrides() -> None:
    env = {"REDIS_URL": "redis://h:1/2", "DW_QUEUE": "q1", "DW_TASK_TIMEOUT": "2.5", "DW_RESULT_TTL": ""}
    settings = Settings.from_env(env, queue="q2", result_ttl=None)
    assert settings.redis_url == "redis://h:1/2"
    assert settings.queue == "q2"
    assert settings.task_timeout == 2.5
    assert settings.result_ttl == Settings.result_ttl


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DW_RESULT_TTL": "soon"}, "DW_RESULT_TTL='soon' is not a valid int"),
        ({"DW_QUEUE": "bad queue"}, "invalid queue name"),
        ({"DW_TASK_TIMEOUT": "0"}, "task_timeout must be positive"),
        ({"DW_HEARTBEAT_TTL": "1", "DW_HEARTBEAT_INTERVAL": "1"}, "at least twice"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://alice:s3cret@host/1") == "rediss://alice:***@host/1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
