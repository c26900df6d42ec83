"""The built-in tasks: the seed's arithmetic, plus I/O-bound and CPU-bound examples, all bounded."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

from common.catalogue import default_catalogue, task
from common.errors import LimitExceeded

Number = int | float

MAX_OPERAND_DIGITS = 1000
"""Largest integer operand (in decimal digits) that arithmetic accepts."""
MAX_RESULT_DIGITS = 4000
"""Largest integer result (in decimal digits): below Python's 4300-digit str() limit."""
MAX_SLEEP_SECONDS = 3600.0
MAX_FIB_N = 20_000
MAX_PRIME_CANDIDATE = 3_317_044_064_679_887_385_961_981
"""Up to here the Miller-Rabin bases below give a deterministic answer."""
MAX_HASH_ROUNDS = 1_000_000
MAX_TEXT_LENGTH = 1_000_000


_MAX_OPERAND_BITS = math.floor(MAX_OPERAND_DIGITS * 3.33)


def _operand(value: Number) -> Number:
    # Exact type tests first: arguments arrive from JSON, and this runs twice per arithmetic task.
    kind = type(value)
    if kind is int or (kind is not float and isinstance(value, int)):
        if value.bit_length() > _MAX_OPERAND_BITS:  # type: ignore[union-attr]
            raise LimitExceeded(f"operand has more than {MAX_OPERAND_DIGITS} digits")
    elif isinstance(value, float) and not math.isfinite(value):
        raise LimitExceeded("operand must be a finite number")
    return value


@task
def add(a: Number, b: Number) -> Number:
    """a + b"""
    return _operand(a) + _operand(b)


@task
def subtract(a: Number, b: Number) -> Number:
    """a - b"""
    return _operand(a) - _operand(b)


@task
def multiply(a: Number, b: Number) -> Number:
    """a * b"""
    return _operand(a) * _operand(b)


@task
def divide(a: Number, b: Number) -> float:
    """a / b (true division; dividing by zero fails the task)."""
    return _operand(a) / _operand(b)


@task
def mod(a: Number, b: Number) -> Number:
    """a mod b (a zero modulus fails the task)."""
    return _operand(a) % _operand(b)


@task
def power(base: Number, exponent: Number) -> Number:
    """base ** exponent, refused before computing when the result would be enormous."""
    _operand(base)
    _operand(exponent)
    if exponent < 0 and base == 0:
        raise ZeroDivisionError("0 cannot be raised to a negative power")
    digits_allowed = MAX_RESULT_DIGITS if isinstance(base, int) and isinstance(exponent, int) else 300
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > digits_allowed:
        raise LimitExceeded(f"result would have more than {digits_allowed} digits")
    result = base**exponent
    if isinstance(result, complex):
        raise ValueError("result is a complex number")
    if isinstance(result, float) and not math.isfinite(result):
        raise LimitExceeded("result is too large for a float")
    return result


@task
def sleep(seconds: Number) -> Number:
    """Sleep (an I/O-bound stand-in) and return the seconds slept."""
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise LimitExceeded(f"seconds must be between 0 and {MAX_SLEEP_SECONDS:g}")
    time.sleep(seconds)
    return seconds


async def _sleep_async(seconds: Number) -> Number:
    """sleep's form for async slots: one event loop holds many sleeps at once, no thread each."""
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise LimitExceeded(f"seconds must be between 0 and {MAX_SLEEP_SECONDS:g}")
    await asyncio.sleep(seconds)
    return seconds


default_catalogue.add_coroutine("sleep", _sleep_async)


@task
def fib(n: int) -> int:
    """The n-th Fibonacci number, computed iteratively (CPU-bound)."""
    if not 0 <= n <= MAX_FIB_N:
        raise LimitExceeded(f"n must be between 0 and {MAX_FIB_N}")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@task
def is_prime(n: int) -> bool:
    """Whether n is prime (deterministic Miller-Rabin; CPU-bound for large n)."""
    if not 0 <= n <= MAX_PRIME_CANDIDATE:
        raise LimitExceeded(f"n must be between 0 and {MAX_PRIME_CANDIDATE}")
    if n < 2:
        return False
    small_primes = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in small_primes:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in small_primes:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@task
def sha256(text: str, rounds: int = 1) -> str:
    """Hex SHA-256 of the text, re-hashed `rounds` times (CPU-bound for many rounds)."""
    if len(text) > MAX_TEXT_LENGTH:
        raise LimitExceeded(f"text longer than {MAX_TEXT_LENGTH} characters")
    if not 1 <= rounds <= MAX_HASH_ROUNDS:
        raise LimitExceeded(f"rounds must be between 1 and {MAX_HASH_ROUNDS}")
    digest = hashlib.sha256(text.encode()).digest()
    for _ in range(rounds - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@task
def echo(*values: Any) -> Any:
    """Return the value given (or the list of values when there are several)."""
    return values[0] if len(values) == 1 else list(values)
