"""Local mode's errors: the hints to reattach to a batch are dropped, since its Redis is gone."""

from __future__ import annotations

import pytest

from common.errors import EXIT_INTERRUPTED, EXIT_TIMEOUT, InputError, RedisUnavailable, TaskNotOffered
from dispatcher.batch import _check_deadline
from dispatcher.localrun import LOCAL_MODE_END, LocalRunEnded, ended_with_local_redis, without_reattach_hints

HINTED = [
    (
        "timed out waiting for batch b1; it goes on: `dispatcher results b1` fetches its results",
        "timed out waiting for batch b1",
    ),
    (
        "task 'x' refused; batch b1 was aborted after its first 5 task(s) had been enqueued "
        "(they still run: `dispatcher results b1` shows them)",
        "task 'x' refused; batch b1 was aborted after its first 5 task(s) had been enqueued",
    ),
    (
        "Interrupted. The batch goes on: `dispatcher results b1` prints its results.\n`dispatcher cancel b1` stops it.",
        "Interrupted.",
    ),
    ("no hint in images.resize here; none at all", "no hint in images.resize here; none at all"),
    ("stopped; run dispatcher cancel b1 to stop it", "stopped"),
]


@pytest.mark.parametrize(("message", "expected"), HINTED)
def test_hints_to_reattach_are_dropped(message: str, expected: str) -> None:
    assert without_reattach_hints(message) == expected


def test_a_local_time_out_says_the_batch_ended_with_its_redis() -> None:
    with pytest.raises(LocalRunEnded) as caught, ended_with_local_redis():
        _check_deadline(0.0, "b1")
    assert caught.value.exit_code == EXIT_TIMEOUT
    assert str(caught.value) == f"timed out waiting for batch b1; {LOCAL_MODE_END}"


def test_a_local_interruption_says_the_batch_ended_with_its_redis() -> None:
    with pytest.raises(LocalRunEnded) as caught, ended_with_local_redis():
        raise KeyboardInterrupt
    assert caught.value.exit_code == EXIT_INTERRUPTED
    assert "dispatcher results" not in str(caught.value)


@pytest.mark.parametrize(
    "error", [InputError("line 3: bad"), TaskNotOffered("nothing was enqueued"), RedisUnavailable("cannot connect")]
)
def test_errors_without_a_hint_pass_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, ended_with_local_redis():
        raise error
    assert caught.value is error
