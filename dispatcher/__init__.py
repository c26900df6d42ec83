"""The dispatcher side: submit batches of tasks through Redis and await their results."""

from dispatcher.executor import RedisExecutor

__all__ = ["RedisExecutor"]
