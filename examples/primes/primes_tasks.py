"""Counting primes in a range: a CPU-bound task module that workers serve with `--tasks primes_tasks`."""

from __future__ import annotations

import math

from common import task

MAX_STOP = 10**12
"""Largest range end accepted (the sieve of the base primes stays small below it)."""
MAX_SPAN = 50_000_000
"""Largest range one task sieves (its memory is one byte per number)."""


@task(name="primes.count")
def count_primes(start: int, stop: int) -> int:
    """How many primes p satisfy start <= p < stop (a segmented sieve of Eratosthenes)."""
    if not 0 <= start <= stop <= MAX_STOP:
        raise ValueError(f"need 0 <= start <= stop <= {MAX_STOP}")
    if stop - start > MAX_SPAN:
        raise ValueError(f"a range may span at most {MAX_SPAN} numbers")
    start = max(start, 2)
    if stop <= start:
        return 0
    segment = bytearray(b"\x01") * (stop - start)
    for p in _base_primes(math.isqrt(stop - 1)):
        first = max(p * p, (start + p - 1) // p * p)
        if first < stop:
            segment[first - start :: p] = bytes(len(range(first - start, stop - start, p)))
    return segment.count(1)


def _base_primes(limit: int) -> list[int]:
    if limit < 2:
        return []
    sieve = bytearray(b"\x01") * (limit + 1)
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return [i for i, is_prime in enumerate(sieve) if is_prime]
