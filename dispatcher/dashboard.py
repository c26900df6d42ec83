"""`python -m dispatcher.dashboard`: rq-dashboard, with our JSON jobs readable on its workers page too.

rq-dashboard 0.9 decodes jobs with the serializer its `--json` flag selects, except on the workers
page: it lists workers with RQ's default serializer (pickle), so a worker busy with one of our JSON
chunk jobs makes `workers.json` fail with HTTP 500. Run this module instead of `rq-dashboard`
(same options; pass `--json`) to list workers with the JSON serializer as well.
"""

from __future__ import annotations

import importlib.metadata
import json
import shlex
import sys
from typing import Any
from urllib.parse import unquote, urlparse

import redis

from common.errors import ConfigurationError

DISTRIBUTION = "redis-dispatch"
"""This project's distribution name, as pip knows it."""
EXTRA = "monitoring"
"""The extra of pyproject.toml that brings rq-dashboard."""


def install_command(direct_url: str | None = None) -> str:
    """The pip command that adds the monitoring extra to this installation: from the checkout it was
    installed from (editable or not), else by name; `direct_url` is pip's record of that source,
    read from this distribution's metadata when not given."""
    if direct_url is None:
        try:
            direct_url = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        except importlib.metadata.PackageNotFoundError:
            direct_url = None
    target = shlex.quote(f"{DISTRIBUTION}[{EXTRA}]")
    source = json.loads(direct_url) if direct_url else {}
    url = urlparse(source.get("url", ""))
    if "dir_info" in source and url.scheme == "file":
        target = shlex.quote(f"{unquote(url.path)}[{EXTRA}]")
        if source["dir_info"].get("editable"):
            target = f"-e {target}"
    return f"{shlex.quote(sys.executable)} -m pip install {target}"


def unavailable() -> str | None:
    """Why rq-dashboard cannot run here, with the command that installs it; None when it can."""
    try:
        import rq_dashboard.cli  # noqa: F401
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "rq_dashboard":
            return f"rq-dashboard is not installed: {install_command()}"
        return f"rq-dashboard cannot be imported ({exc}): {install_command()}"
    return None


def patch_rq_dashboard() -> None:
    """Make rq-dashboard's workers page load workers (and their current jobs) with JSONSerializer."""
    from rq import Queue
    from rq.job import Job
    from rq.serializers import JSONSerializer
    from rq.worker import BaseWorker, Worker
    from rq_dashboard import web

    class JSONWorker(Worker):
        @classmethod
        def all(
            cls,
            connection: redis.Redis | None = None,
            job_class: type[Job] | None = None,
            queue_class: type[Queue] | None = None,
            queue: Queue | None = None,
            serializer: Any = None,
        ) -> list[BaseWorker]:
            return super().all(connection, job_class, queue_class, queue, serializer or JSONSerializer)

    web.Worker = JSONWorker


def main(args: list[str] | None = None, prog_name: str = "python -m dispatcher.dashboard") -> None:
    """rq-dashboard's own command line (its options, its RQ_DASHBOARD_* variables), patched.

    Raises ConfigurationError, naming the install command, when rq-dashboard cannot be imported.
    """
    problem = unavailable()
    if problem is not None:
        raise ConfigurationError(problem)
    patch_rq_dashboard()
    from rq_dashboard.cli import run

    run.main(args=args, prog_name=prog_name, auto_envvar_prefix="RQ_DASHBOARD")


if __name__ == "__main__":
    from common.cli import error_edge

    with error_edge("python -m dispatcher.dashboard"):
        main()
