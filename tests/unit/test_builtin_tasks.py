"""The built-in tasks compute the right thing and refuse enormous work."""

from __future__ import annotations

import hashlib

import pytest

from common import builtin_tasks as t
from common.errors import LimitExceeded


def test_arithmetic() -> None:
    assert t.add(10, 5) == 15
    assert t.subtract(10, 5) == 5
    assert t.multiply(7, 8) == 56
    assert t.divide(1, 4) == 0.25
    assert t.mod(17, 5) == 2
    assert t.power(2, 10) == 1024
    assert t.add(0.5, 1) == 1.5


def test_division_and_modulo_by_zero_raise() -> None:
    with pytest.raises(ZeroDivisionError):
        t.divide(1, 0)
    with pytest.raises(ZeroDivisionError):
        t.mod(1, 0)
    with pytest.raises(ZeroDivisionError):
        t.power(0, -1)


def test_power_refuses_enormous_results_before_computing() -> None:
    with pytest.raises(LimitExceeded):
        t.power(10, 10**9)
    with pytest.raises(LimitExceeded):
        t.power(2.0, 5000.0)
    assert t.power(1, 10**9) == 1


def test_operands_are_bounded() -> None:
    with pytest.raises(LimitExceeded):
        t.multiply(10**2000, 2)
    with pytest.raises(LimitExceeded):
        t.add(float("inf"), 1)


def test_cpu_tasks() -> None:
    assert [t.fib(n) for n in range(10)] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert t.fib(90) == 2880067194370816120
    primes = [n for n in range(60) if t.is_prime(n)]
    assert primes == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59]
    assert t.is_prime(2_147_483_647)
    assert not t.is_prime(2_147_483_647 * 3)
    assert not t.is_prime(3_215_031_751)  # a strong pseudoprime to bases 2, 3, 5, 7
    with pytest.raises(LimitExceeded):
        t.fib(10**6)
    with pytest.raises(LimitExceeded):
        t.is_prime(-1)


def test_sha256_and_echo() -> None:
    assert t.sha256("abc") == hashlib.sha256(b"abc").hexdigest()
    assert t.sha256("abc", 2) == hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()
    with pytest.raises(LimitExceeded):
        t.sha256("abc", 0)
    assert t.echo("hi there") == "hi there"
    assert t.echo(1, 2) == [1, 2]


def test_sleep_bounds() -> None:
    assert t.sleep(0) == 0
    with pytest.raises(LimitExceeded):
        t.sleep(-1)
    with pytest.raises(LimitExceeded):
        t.sleep(10**6)
