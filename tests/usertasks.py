"""A user's task module, as the tests serve it: `worker --tasks tests.usertasks`."""

from __future__ import annotations

from common import task


@task(name="images.resize")
def resize(path: str, width: int) -> str:
    """A namespaced task with type hints (the worker checks arguments against them)."""
    return f"{path}@{width}w"


@task(name="usertasks.explode")
def explode(message: str) -> None:
    """Fails from a nested call, so the remote traceback has frames worth showing."""
    _deeper(message)


def _deeper(message: str) -> None:
    raise RuntimeError(message)


@task(name="usertasks.double")
def double(x: int) -> int:
    """Twice x."""
    return 2 * x
