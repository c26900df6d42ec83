"""A live producer on stdin: results are written while it waits, not held until its next line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from dispatcher.local import spawn
from tests.conftest import WorkerFactory

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunking", [["--chunk-size", "50"], []], ids=["chunk-size-50", "auto-chunk-size"])
def test_results_flow_while_the_producer_waits(
    redis_url: str, start_worker: WorkerFactory, chunking: list[str]
) -> None:
    start_worker()
    dispatcher = spawn(
        [sys.executable, "-m", "dispatcher", "submit", "-", "--json", "--no-check", *chunking],
        env={**os.environ, "REDIS_URL": redis_url},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert dispatcher.stdin is not None and dispatcher.stdout is not None
    try:
        # 120 lines: two full chunks of 50 and a partial one that only the producer's silence can send.
        dispatcher.stdin.write(b"".join(f"add {i} 1\n".encode() for i in range(120)))
        dispatcher.stdin.flush()
        started = time.monotonic()
        lines = [dispatcher.stdout.readline() for _ in range(120)]  # the input stays open meanwhile
        waited = time.monotonic() - started
        rows = [json.loads(line) for line in lines]
        assert sorted(row["result"] for row in rows) == list(range(1, 121)), (rows, waited)
        assert dispatcher.poll() is None, "the dispatcher stopped before its input ended"
        dispatcher.stdin.write(b"add 1000 1\n")
        dispatcher.stdin.close()
        rest = dispatcher.stdout.read().splitlines()
        assert [json.loads(line)["result"] for line in rest if b'"result"' in line] == [1001]
        assert dispatcher.wait(60) == 0
    finally:
        if dispatcher.poll() is None:
            dispatcher.kill()
            dispatcher.wait()
        dispatcher.stdout.close()
