"""The worker's side of cancelling: a chunk of a cancelled batch is answered, not run."""

from __future__ import annotations

import redis

from common import keys
from common.cancel import CANCELLED_FIELD


def batch_cancelled(client: redis.Redis, batch_id: str) -> bool:
    """Whether the batch was cancelled (one HEXISTS per chunk, not per task)."""
    return bool(client.hexists(keys.batch_key(batch_id), CANCELLED_FIELD))
