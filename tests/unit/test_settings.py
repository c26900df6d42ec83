"""DW_WAIT_FOR_REDIS: how long a starting worker waits for Redis."""

from __future__ import annotations

import pytest

from common.errors import ConfigurationError
from common.settings import Settings


def test_default_env_and_override() -> None:
    assert Settings.from_env({}).wait_for_redis == 30.0
    assert Settings.from_env({"DW_WAIT_FOR_REDIS": "2.5"}).wait_for_redis == 2.5
    assert Settings.from_env({"DW_WAIT_FOR_REDIS": "2.5"}, wait_for_redis=0.0).wait_for_redis == 0.0


@pytest.mark.parametrize("raw", ["-1", "soon"])
def test_bad_values_are_refused(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=r"DW_WAIT_FOR_REDIS|wait_for_redis"):
        Settings.from_env({"DW_WAIT_FOR_REDIS": raw})
