"""End to end: hostile input lines through the real CLI, a real redis-server and a real worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WorkerFactory, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DEEP = 100_000


def submit(redis_url: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "submit", *args, "--json", "--ordered"],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, "REDIS_URL": redis_url},
        check=False,
    )


def records(stdout: bytes | str) -> list[dict[str, object]]:
    text = stdout.decode() if isinstance(stdout, bytes) else stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_of(record: dict[str, object]) -> tuple[object, str]:
    error = record["error"]
    assert isinstance(error, dict), record
    return error["type"], error["message"]


def check_batch_known(redis_url: str, stderr: bytes, expected: list[dict[str, object]]) -> None:
    """`dispatcher results BATCH_ID` finds the batch and gives the same results."""
    found = re.search(r"batch (\S+): submitting", stderr.decode())
    assert found, stderr
    again = run_cli("results", found.group(1), "--json", "--ordered", env={"REDIS_URL": redis_url})
    assert again.returncode == 1, again.stderr
    assert [(r["index"], r["ok"]) for r in records(again.stdout)] == [(r["index"], r["ok"]) for r in expected]


def test_a_text_file_of_hostile_lines_gives_one_result_per_line(
    redis_url: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    start_worker()
    batch = tmp_path / "hostile.txt"
    batch.write_bytes(
        b"add 1 2\n"
        + b'echo "'
        + b"x" * 5_000_000
        + b'"\n'
        + b"add 3 \xff\xfe\n"
        + b"echo "
        + b"[" * DEEP
        + b"]" * DEEP
        + b"\r\n"
        + b"add 1\x002\n"
        + b"add 5 6"
    )
    done = submit(redis_url, str(batch))
    assert done.returncode == 1, done.stderr
    got = records(done.stdout)
    assert [r["index"] for r in got] == [0, 1, 2, 3, 4, 5]
    assert got[0]["result"] == 3 and got[5]["result"] == 11
    assert error_of(got[1])[0] == "LimitExceeded" and "line 2" in error_of(got[1])[1]
    assert error_of(got[2])[0] == "MalformedInput" and "line 3: line is not UTF-8" in error_of(got[2])[1]
    assert got[3]["result"] == "[" * DEEP + "]" * DEEP  # in text, brackets are just a word
    assert error_of(got[4])[0] == "MalformedInput" and "line 5" in error_of(got[4])[1]
    assert b"6 tasks, 3 ok, 3 failed" in done.stderr
    check_batch_known(redis_url, done.stderr, got)


def test_json_lines_on_stdin_are_detected_and_hostile_ones_fail_alone(
    redis_url: str, start_worker: WorkerFactory
) -> None:
    start_worker()
    lines = [
        b"",
        b'{"task": "add", "args": [1, 2]}',
        json.dumps({"task": "echo", "args": ["x" * 5_000_000]}).encode(),
        b'{"task": "echo", "args": ["caf\xe9"]}',
        b'{"task": "echo", "args": [' + b"[" * DEEP + b"]" * DEEP + b"]}",
        b'{"task": "echo", "args": [[[["deep enough"]]]]}',
    ]
    done = submit(redis_url, "-", stdin=b"\n".join(lines) + b"\n")
    assert done.returncode == 1, done.stderr
    got = records(done.stdout)
    assert [r["index"] for r in got] == [0, 1, 2, 3, 4]
    assert got[0]["result"] == 3 and got[4]["result"] == [[["deep enough"]]]
    assert [error_of(r)[0] for r in got[1:4]] == ["LimitExceeded", "MalformedInput", "LimitExceeded"]
    assert [error_of(r)[1].split(":")[0] for r in got[1:4]] == ["line 3", "line 4", "line 5"]
    check_batch_known(redis_url, done.stderr, got)
