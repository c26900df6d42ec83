"""The retry policy: which errors are retried, how long each backoff is, and what it refuses."""

from __future__ import annotations

import random

import pytest

from common.errors import ConfigurationError, TaskTimeout
from common.retry import RetryPolicy


def test_exact_backoff_doubles_from_backoff_up_to_max_backoff() -> None:
    policy = RetryPolicy(10, backoff=0.5, max_backoff=3, jitter="none")
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3, 3, 3]
    assert policy.delay(10_000) == 3  # no overflow on huge attempt numbers


def test_full_jitter_draws_between_zero_and_the_exponential_ceiling() -> None:
    policy = RetryPolicy(5, backoff=1, max_backoff=6)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 6), (5, 6)]:
        draws = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2  # spread, not a constant


def test_decorrelated_jitter_stays_between_backoff_and_three_times_the_last_delay_capped() -> None:
    policy = RetryPolicy(50, backoff=0.5, max_backoff=10, jitter="decorrelated")
    rng = random.Random(3)
    previous = 0.0
    for attempt in range(1, 50):
        delay = policy.delay(attempt, previous, rng)
        assert 0.5 <= delay <= min(10, max(0.5, previous * 3))
        previous = delay
    assert previous > 1  # it grows


def test_only_errors_of_retry_on_are_retried_and_only_retries_times() -> None:
    policy = RetryPolicy(2, retry_on=(OSError, TimeoutError))
    assert policy.retries_error(ConnectionResetError(), 1)  # a subclass of OSError
    assert policy.retries_error(TimeoutError(), 2)
    assert not policy.retries_error(OSError(), 3)  # third failure: retries are used up
    assert not policy.retries_error(ValueError(), 1)
    assert not policy.retries_error(TaskTimeout("stopped"), 1)  # a stopped task only if retry_on names it
    assert RetryPolicy(1).retries_error(TaskTimeout("stopped"), 1)  # the default: any Exception


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": 0}, "retries must be a positive integer"),
        ({"retries": True}, "retries must be a positive integer"),
        ({"retries": 1, "retry_on": ()}, "retry_on must be exception classes"),
        ({"retries": 1, "retry_on": (KeyboardInterrupt,)}, "retry_on must be exception classes"),
        ({"retries": 1, "retry_on": ("OSError",)}, "retry_on must be exception classes"),
        ({"retries": 1, "backoff": -1}, "backoff must be a finite number"),
        ({"retries": 1, "backoff": float("nan")}, "backoff must be a finite number"),
        ({"retries": 1, "max_backoff": float("inf")}, "max_backoff must be a finite number"),
        ({"retries": 1, "backoff": 5, "max_backoff": 1}, "max_backoff \\(1\\) is below backoff \\(5\\)"),
        ({"retries": 1, "jitter": "some"}, "jitter must be one of full, decorrelated, none"),
    ],
)
def test_invalid_policies_are_refused_with_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
