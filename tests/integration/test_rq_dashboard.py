"""rq-dashboard (the `monitoring` extra, run with --json through dispatcher.dashboard) reads our queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from common import keys
from tests.conftest import WorkerFactory, run_cli
from tests.support import in_ci, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture
def dashboard(redis_url: str) -> Iterator[Any]:
    if not in_ci():
        pytest.importorskip("rq_dashboard", reason="rq-dashboard is not installed (pip install -e '.[monitoring]')")
    from rq.serializers import JSONSerializer
    from rq_dashboard import web
    from rq_dashboard.cli import make_flask_app

    from dispatcher.dashboard import patch_rq_dashboard

    saved_worker = web.Worker
    patch_rq_dashboard()

    app = make_flask_app(None, None, None, "")
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
    saved, web.config.serializer = web.config.serializer, JSONSerializer  # what `rq-dashboard --json` does
    web.setup_rq_connection(app)
    yield app.test_client()
    web.config.serializer = saved
    web.Worker = saved_worker


def test_dashboard_lists_our_queue_jobs_and_workers(
    dashboard: Any, redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    lines = "sleep 3\nadd 1 2\nadd 3 4\nfib 10\n"
    queued = run_cli(
        "submit", "-", "--no-wait", "--no-check", "--chunk-size", "2", stdin=lines, env={"REDIS_URL": redis_url}
    )
    assert queued.returncode == 0, queued.stderr
    batch_id = queued.stdout.strip()

    queues = dashboard.get("/0/data/queues.json").get_json()["queues"]
    assert {q["name"]: q["count"] for q in queues}["tasks"] == 2
    jobs = dashboard.get("/0/data/jobs/tasks/queued/10/asc/1.json").get_json()["jobs"]
    assert sorted(job["id"] for job in jobs) == [f"{batch_id}-0", f"{batch_id}-1"]
    job = dashboard.get(f"/0/data/job/{batch_id}-0.json")
    assert job.status_code == 200 and job.get_json()["status"] == "queued"

    start_worker("--name", "seen-by-dashboard")
    busy = lambda: real_client.hget(keys.rq_worker_key("seen-by-dashboard"), "state") == b"busy"  # noqa: E731
    wait_until(busy, 30, "the worker to be busy with the first chunk")
    # A worker busy with one of our JSON chunk jobs: stock rq-dashboard 0.9 answers 500 here.
    response = dashboard.get("/0/data/workers.json")
    assert response.status_code == 200
    (worker,) = response.get_json()["workers"]
    assert worker["name"] == "seen-by-dashboard"
    assert worker["current_job"]["job_id"] == f"{batch_id}-0"
