"""User task modules: @task from `common`, namespaced names, arguments checked against type hints."""

from __future__ import annotations

import pytest

from common import default_catalogue
from common.errors import InvalidArguments
from common.wire import TaskSpec
from dispatcher.chunking import group_pending
from tests import usertasks


def test_user_tasks_register_under_their_namespaced_names() -> None:
    definition = default_catalogue.get("images.resize")
    assert definition.func is usertasks.resize
    assert usertasks.resize("a.png", 10) == "a.png@10w"  # the decorator returns the function itself


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(["a.png", 100], {}), (["a.png"], {"width": 3})],
)
def test_arguments_that_fit_the_hints_pass(args: list[object], kwargs: dict[str, object]) -> None:
    default_catalogue.get("images.resize").check_arguments(args, kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["a.png", "wide"], {}, "argument 'width' must be int, got str"),
        (["a.png", True], {}, "must be int, got bool"),
        ([7, 100], {}, "argument 'path' must be str"),
        (["a.png"], {}, "missing a required argument: 'width'"),
        (["a.png", 1, 2], {}, "too many positional arguments"),
        (["a.png", 1], {"height": 2}, "unexpected keyword argument 'height'"),
    ],
)
def test_arguments_that_do_not_fit_are_refused(args: list[object], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArguments, match=message):
        default_catalogue.get("images.resize").check_arguments(args, kwargs)


def test_executor_groups_loose_submits_and_keeps_map_chunks() -> None:
    def specs(first: int, count: int) -> list[TaskSpec]:
        return [TaskSpec(i, "add", [i, i]) for i in range(first, first + count)]

    pending = [(True, specs(0, 1)), (True, specs(1, 1)), (True, specs(2, 1)), (False, specs(3, 4)), (True, specs(7, 1))]
    chunks = [[s.index for s in chunk] for chunk in group_pending(pending, 2)]
    assert chunks == [[0, 1], [2], [3, 4, 5, 6], [7]]
