"""Tasks run only where they are offered: plain workers and a `--tasks` worker share one queue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common.builtin_tasks import add
from dispatcher import RedisExecutor
from tests import usertasks
from tests.conftest import ROOT, WorkerFactory, run_cli
from tests.integration.test_executor import USER_ENV, wait_offered

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

USER_TASKS = ("images.resize", "usertasks.double")


@pytest.fixture
def mixed_workers(start_worker: WorkerFactory, real_client: redis.Redis) -> None:
    """Two plain workers (built-in tasks only) and one that also serves tests.usertasks, on queue `tasks`."""
    start_worker("--name", "plain-a")
    start_worker("--name", "plain-b")
    start_worker("--name", "offering", "--tasks", "tests.usertasks", env=USER_ENV)
    wait_offered(real_client, "add", 3)
    wait_offered(real_client, "images.resize")


def _results(redis_url: str, batch_id: str) -> list[dict[str, object]]:
    done = run_cli("results", batch_id, "--json", "--ordered", "--timeout", "60", env={"REDIS_URL": redis_url})
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _assert_user_tasks_ran_where_offered(rows: list[dict[str, object]]) -> None:
    assert rows, "no results"
    unknown = [row for row in rows if not row["ok"] and row["error"]["type"] == "UnknownTask"]  # type: ignore[index]
    assert not unknown, f"{len(unknown)} task(s) ran on a worker that does not offer them: {unknown[:3]}"
    assert all(row["ok"] for row in rows), [row for row in rows if not row["ok"]][:3]
    user_rows = [row for row in rows if row["task"] in USER_TASKS]
    assert user_rows and {row["worker"] for row in user_rows} == {"offering"}


def test_a_batch_mixing_builtin_and_user_tasks_runs_each_where_it_is_offered(
    redis_url: str, mixed_workers: None, tmp_path: Path
) -> None:
    rows = []
    for i in range(300):
        rows.append({"task": "add", "args": [i, 1]})
        if i % 3 == 0:
            rows.append({"task": "images.resize", "args": [f"{i}.png", i]})
        if i % 5 == 0:
            rows.append({"task": "usertasks.double", "args": [i]})
    batch = tmp_path / "mixed.jsonl"
    batch.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = run_cli("submit", str(batch), "--json", "--ordered", "--timeout", "120", env={"REDIS_URL": redis_url})
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == len(rows)
    _assert_user_tasks_ran_where_offered(records)
    assert done.returncode == 0, done.stderr
    assert [r["result"] for r in records if r["task"] == "images.resize"] == [f"{i}.png@{i}w" for i in range(0, 300, 3)]
    assert {r["worker"] for r in records if r["task"] == "add"} <= {"plain-a", "plain-b", "offering"}

    # chunk size 1: one chunk per line, every user chunk on its own route
    small = run_cli(
        "submit", str(batch), "--json", "--chunk-size", "1", "--timeout", "120", env={"REDIS_URL": redis_url}
    )
    _assert_user_tasks_ran_where_offered([json.loads(line) for line in small.stdout.splitlines()])
    assert small.returncode == 0, small.stderr


@pytest.mark.parametrize("chunksize", [None, 8])
def test_the_readme_executor_example_runs_user_tasks_where_they_are_offered(
    redis_url: str, mixed_workers: None, chunksize: int | None
) -> None:
    with RedisExecutor(redis_url, chunksize=chunksize) as executor:
        # submits that arrive together, built-in and user tasks interleaved: grouped by route
        mixed = [executor.submit(add if i % 2 else usertasks.double, i, *([i] if i % 2 else [])) for i in range(60)]
        assert [f.result(timeout=60) for f in mixed] == [2 * i for i in range(60)]
        futures = [executor.submit(usertasks.resize, f"{i}.png", 640) for i in range(40)]
        futures += [executor.submit("images.resize", f"n{i}.png", width=i) for i in range(20)]
        sums = [executor.submit(add, i, i) for i in range(20)]
        assert [f.result(timeout=60) for f in futures[:40]] == [f"{i}.png@640w" for i in range(40)]
        assert [f.result(timeout=60) for f in futures[40:]] == [f"n{i}.png@{i}w" for i in range(20)]
        assert [f.result(timeout=60) for f in sums] == [2 * i for i in range(20)]
        assert list(executor.map(usertasks.double, range(200), timeout=60)) == [2 * i for i in range(200)]
        assert sum(executor.map("add", range(1000), range(1000), timeout=60)) == 999_000
        batch_id = executor.batch_id
    _assert_user_tasks_ran_where_offered(_results(redis_url, batch_id))


def test_status_shows_which_workers_offer_what(redis_url: str, mixed_workers: None) -> None:
    text = run_cli("status", env={"REDIS_URL": redis_url})
    assert text.returncode == 0, text.stderr
    offer_lines = [line for line in text.stdout.splitlines() if "images.resize" in line]
    assert any("offering" in line for line in offer_lines), text.stdout
    assert not any("plain-a" in line for line in offer_lines), text.stdout

    snapshot = json.loads(run_cli("status", "--json", env={"REDIS_URL": redis_url}).stdout)
    workers = {w["name"]: w for w in snapshot["workers"]}
    assert workers["plain-a"]["user_tasks"] == []
    assert set(USER_TASKS) <= set(workers["offering"]["user_tasks"])
    assert snapshot["offered"]["images.resize"] == ["offering"]


def test_rq_info_shows_the_routes_queues(redis_url: str, mixed_workers: None) -> None:
    queued = run_cli(
        "submit",
        "-",
        "--no-wait",
        "--no-check",
        "--chunk-size",
        "1",
        stdin="thumbnails.make a.png\nimages.resize a.png 3\nadd 1 2\n",
        env={"REDIS_URL": redis_url},
    )
    assert queued.returncode == 0, queued.stderr
    rq = Path(sys.executable).parent / "rq"
    info = subprocess.run(
        [str(rq), "info", "--url", redis_url, "-S", "rq.serializers.JSONSerializer"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert info.returncode == 0, info.stderr
    assert "tasks@thumbnails.make" in info.stdout and "offering" in info.stdout
    text = run_cli("status", env={"REDIS_URL": redis_url}).stdout
    assert "tasks@thumbnails.make: 1 queued, 0 running, 0 failed (no live worker offers it)" in text
