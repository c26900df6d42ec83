"""`python -m dispatcher.dashboard`: rq-dashboard, with our JSON jobs readable on its workers page too.

rq-dashboard 0.9 decodes jobs with the serializer its `--json` flag selects, except on the workers
page: it lists workers with RQ's default serializer (pickle), so a worker busy with one of our JSON
chunk jobs makes `workers.json` fail with HTTP 500. Run this module instead of `rq-dashboard`
(same options; pass `--json`) to list workers with the JSON serializer as well.
"""

from __future__ import annotations

from typing import Any

import redis


def patch_rq_dashboard() -> None:
    """Make rq-dashboard's workers page load workers (and their current jobs) with JSONSerializer."""
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer
    from rq.worker import BaseWorker, Worker
    from rq_dashboard import web

    class JSONWorker(Worker):
        @classmethod
        def all(cls, connection: redis.Redis | None = None, job_class: type[Job] | None = None,
                queue_class: type[Queue] | None = None, queue: Queue | None = None,
                serializer: Any = None) -> list[BaseWorker]:  # fmt: skip
            return super().all(connection, job_class, queue_class, queue, serializer or JSONSerializer)

    web.Worker = JSONWorker


def main(args: list[str] | None = None, prog_name: str = "python -m dispatcher.dashboard") -> None:
    """rq-dashboard's own command line (its options, its RQ_DASHBOARD_* variables), patched."""
    patch_rq_dashboard()
    from rq_dashboard.cli import run

    run.main(args=args, prog_name=prog_name, auto_envvar_prefix="RQ_DASHBOARD")


if __name__ == "__main__":
    main()
