"""Which RQ queue a chunk goes to: tasks outside the built-in catalogue get a queue of their own.

Every worker offers the built-in tasks, so chunks of built-in tasks stay on the configured queue `Q`.
A chunk holding a task `name` from a user's module goes to `Q@name`, which only workers that offer
`name` serve. Both sides name the queues here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from common import builtin_tasks
from common.catalogue import default_catalogue

ROUTE_SEPARATOR = "@"
"""Between a queue and a task name in a route's queue name; queue names themselves may not hold it."""

BUILTIN_TASKS: frozenset[str] = frozenset(
    definition.name for definition in default_catalogue if definition.func.__module__ == builtin_tasks.__name__
)
"""Names of the built-in tasks: registered in every worker's catalogue, so offered by every worker."""

Route = str | None
"""A chunk's route: the user task name it holds, or None for built-in tasks only."""


def route_of(task: str) -> Route:
    """The route of a task name: None for a built-in task, else the name itself."""
    return None if task in BUILTIN_TASKS else task


def queue_of(queue: str, route: Route) -> str:
    """The RQ queue that chunks of `route` submitted to `queue` go to."""
    return queue if route is None else f"{queue}{ROUTE_SEPARATOR}{route}"


def split_queue(name: str) -> tuple[str, Route]:
    """(configured queue, route) of an RQ queue name: the inverse of queue_of."""
    queue, separator, route = name.partition(ROUTE_SEPARATOR)
    return (queue, route) if separator else (name, None)


def served_queues(queues: Iterable[str], offered: Iterable[str]) -> list[str]:
    """The RQ queues a worker offering the task names `offered` serves, in priority order: for each
    configured queue, the route of each user task it offers (sorted), then the queue itself."""
    routes = sorted({route for route in map(route_of, offered) if route is not None})
    return [queue_of(queue, route) for queue in queues for route in [*routes, None]]


def queue_family(queue: str, names: Iterable[str]) -> list[str]:
    """Of the RQ queue names `names`, `queue` and its routes, `queue` first, then the routes sorted."""
    routes = sorted({name for name in names if split_queue(name)[0] == queue and split_queue(name)[1] is not None})
    return [queue, *routes]
