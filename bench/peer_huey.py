"""The huey app the huey consumer serves: RedisHuey with a result store and result notification."""

from __future__ import annotations

import os

from huey import RedisHuey

from bench import peer_tasks

huey = RedisHuey(
    "bench",
    # redis-py 8 defaults (5 s socket timeout, a capped pool) would break 200 threads of blocking reads.
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0") + "?socket_timeout=300&max_connections=1000",
    results=True,
    notify_result=True,  # the consumer LPUSHes a notification; a waiter BLPOPs it instead of polling
)

add = huey.task()(peer_tasks.add)
sleep = huey.task()(peer_tasks.sleep)
