"""A task's retry policy: which errors are worth another attempt, and how long to wait before it."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from common.errors import ConfigurationError

Jitter = Literal["full", "decorrelated", "none"]
JITTERS: tuple[Jitter, ...] = ("full", "decorrelated", "none")
DEFAULT_BACKOFF = 0.5
"""Seconds before the first retry (before jitter), when a task declares retries but no backoff."""
DEFAULT_MAX_BACKOFF = 30.0
"""Longest delay before a retry, when a task declares retries but no max_backoff."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `retries` more attempts for an error of a `retry_on` type, after an exponential backoff.

    The delay before retry n (n = 1, 2, ...) grows as `backoff * 2**(n-1)`, capped by `max_backoff`,
    and is jittered so that tasks failing together do not all come back together: `full` draws it
    uniformly from [0, that], `decorrelated` from [backoff, 3 * the previous delay] (capped), and
    `none` keeps it exact.
    """

    retries: int
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    jitter: Jitter = "full"

    def __post_init__(self) -> None:
        if type(self.retries) is not int or self.retries < 1:
            raise ConfigurationError(f"retries must be a positive integer, got {self.retries!r}")
        if not self.retry_on or not all(
            isinstance(kind, type) and issubclass(kind, Exception) for kind in self.retry_on
        ):
            raise ConfigurationError(f"retry_on must be exception classes, got {self.retry_on!r}")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if self.max_backoff < self.backoff:
            raise ConfigurationError(f"max_backoff ({self.max_backoff:g}) is below backoff ({self.backoff:g})")
        if self.jitter not in JITTERS:
            raise ConfigurationError(f"jitter must be one of {', '.join(JITTERS)}, got {self.jitter!r}")

    def retries_error(self, error: BaseException, attempt: int) -> bool:
        """Whether `error`, raised by attempt number `attempt` (1 for the first run), earns another one."""
        return attempt <= self.retries and isinstance(error, self.retry_on)

    def delay(self, attempt: int, previous: float = 0.0, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based); `previous` is the last delay drawn."""
        draw = (rng or _rng).uniform
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 64))
        if self.jitter == "full":
            return draw(0.0, ceiling)
        if self.jitter == "decorrelated":
            return min(self.max_backoff, draw(self.backoff, max(self.backoff, previous * 3)))
        return ceiling


_rng = random.Random()


def normalize_retry_on(
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None,
) -> tuple[type[BaseException], ...]:
    """`retry_on` as a tuple: one class or a tuple of them; None means any Exception."""
    if retry_on is None:
        return (Exception,)
    if isinstance(retry_on, type):
        return (retry_on,)
    if isinstance(retry_on, (tuple, list)):
        return tuple(retry_on)
    raise ConfigurationError(f"retry_on must be an exception class or a tuple of them, got {retry_on!r}")
