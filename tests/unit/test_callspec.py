"""A TaskSpec from a Python call's arguments (dispatcher.callspec): refused before anything is sent."""

from __future__ import annotations

import math

import pytest

from common.errors import LimitExceeded
from dispatcher.callspec import plain_arguments, task_spec


@pytest.mark.parametrize(
    ("args", "plain"),
    [((1, -2, 2.5, "x", True, None), True), ((2**63,), False), ((math.nan,), False), (([1],), False)],
)
def test_plain_arguments_are_scalars_json_surely_carries(args: tuple[object, ...], plain: bool) -> None:
    assert plain_arguments(args, 1000) is plain


def test_a_spec_carries_the_call_with_its_index_unset() -> None:
    spec = task_spec("add", (1, [2, 3]), {"k": {"a": 1}}, 1000)
    assert (spec.index, spec.task, spec.args, spec.kwargs, spec.id) == (-1, "add", [1, [2, 3]], {"k": {"a": 1}}, None)


def test_arguments_json_cannot_carry_are_refused() -> None:
    with pytest.raises(TypeError, match="arguments of task 'add' cannot be sent as JSON"):
        task_spec("add", (object(),), {}, 1000)
    with pytest.raises(TypeError, match="cannot be sent as JSON"):
        task_spec("add", (math.inf, [1]), {}, 1000)


def test_arguments_over_the_limit_are_refused() -> None:
    assert task_spec("echo", ("x" * 100,), {}, 1000).args == ["x" * 100]
    with pytest.raises(LimitExceeded, match="over the 1000-byte limit"):
        task_spec("echo", (["é" * 600],), {}, 1000)
