"""The dispatcher side: submit batches of tasks through Redis and await their results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.executor import RedisExecutor

__all__ = ["RedisExecutor"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: the `dispatcher` command starts without it.
    if name == "RedisExecutor":
        from dispatcher.executor import RedisExecutor

        return RedisExecutor
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")
