"""Which RQ path a worker takes: the fast path on verified RQ series unless DW_RQ_FAST_PATH says no."""

from __future__ import annotations

import pytest

from common.errors import ConfigurationError
from common.rqcompat import FAST_PATH_ENV, RQ_VERSION, VERIFIED_SERIES, fast_path_refusal


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_a_no_turns_the_fast_path_off(value: str) -> None:
    assert fast_path_refusal({FAST_PATH_ENV: value}) == f"{FAST_PATH_ENV}={value}"


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", ""])
def test_a_yes_or_nothing_leaves_it_to_the_rq_version(value: str) -> None:
    verified = RQ_VERSION[:2] in VERIFIED_SERIES
    assert (fast_path_refusal({FAST_PATH_ENV: value}) is None) == verified
    assert (fast_path_refusal({}) is None) == verified


@pytest.mark.parametrize("value", ["abc", "2", "maybe"])
def test_anything_else_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{FAST_PATH_ENV}='{value}' is not a yes/no value"):
        fast_path_refusal({FAST_PATH_ENV: value})
