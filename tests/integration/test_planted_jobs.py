"""Only our code runs: jobs planted straight into Redis are refused by a real worker process."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import WorkerFactory, run_cli
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


class Touch:
    """Unpickling this runs a command: the classic pickle payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.path}",)


def test_planted_jobs_never_run_and_the_worker_keeps_serving(
    redis_url: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    client = redis.Redis.from_url(redis_url)
    pickled = Queue("tasks", connection=client)  # RQ's default serializer: pickle
    pickled.enqueue("os.system", f"touch {marker}", job_id="planted-pickle-call")
    as_json = Queue("tasks", connection=client, serializer=JSONSerializer)
    as_json.enqueue("os.system", f"touch {marker}", job_id="planted-os-system")
    as_json.enqueue("builtins.eval", f"open({str(marker)!r}, 'w')", job_id="planted-eval")
    job = as_json.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id="planted-meta")
    client.hset(job.key, "meta", pickle.dumps(Touch(marker)))
    bad = as_json.enqueue("worker.chunk.run_chunk", {"v": 1}, job_id="planted-bogus-status")
    client.hset(bad.key, "status", "bogus")

    start_worker()
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 20 22\n")
    done = run_cli("submit", str(batch), "--timeout", "60", env={"REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    assert "= 42" in done.stdout

    planted = {"planted-pickle-call", "planted-os-system", "planted-eval", "planted-meta", "planted-bogus-status"}
    wait_until(lambda: set(as_json.failed_job_registry.get_job_ids()) >= planted, 30, "every planted job to fail")
    assert not marker.exists()
    reason = as_json.fetch_job("planted-os-system")
    assert reason is not None and "refused" in (reason.latest_result().exc_string or "")
