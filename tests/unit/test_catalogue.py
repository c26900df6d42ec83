"""The task catalogue: registration rules and argument checks."""

from __future__ import annotations

import pytest

from common import default_catalogue
from common.catalogue import Catalogue
from common.errors import ConfigurationError, InvalidArguments, UnknownTask


def test_register_and_lookup_by_name() -> None:
    catalogue = Catalogue()

    @catalogue.register
    def double(x: int) -> int:
        return 2 * x

    assert "double" in catalogue
    assert catalogue.get("double").func is double
    assert catalogue.names() == ["double"]


def test_registering_a_name_twice_is_an_error() -> None:
    catalogue = Catalogue()
    catalogue.register(lambda: 1, name="one")
    with pytest.raises(ConfigurationError, match="already registered"):
        catalogue.register(lambda: 2, name="one")


def test_namespaced_names_and_invalid_names() -> None:
    catalogue = Catalogue()
    catalogue.register(lambda: 1, name="images.resize")
    assert "images.resize" in catalogue
    for bad in ("", "1abc", "a b", "a..b", "os.system()"):
        with pytest.raises(ConfigurationError, match="invalid task name"):
            catalogue.register(lambda: 1, name=bad)


def test_unknown_task_lists_what_is_offered() -> None:
    with pytest.raises(UnknownTask, match=r"unknown task 'nope'.*add.*multiply"):
        default_catalogue.get("nope")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ([1], {}, "missing a required argument"),
        ([1, 2, 3], {}, "too many positional arguments"),
        (["1", 2], {}, "argument 'a' must be"),
        ([True, 2], {}, "argument 'a' must be"),
        ([1, None], {}, "argument 'b' must be"),
        ([1, 2], {"c": 2}, "unexpected keyword argument"),
    ],
)
def test_arguments_are_checked_against_signature_and_hints(
    args: list[object], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArguments, match=message):
        default_catalogue.get("add").check_arguments(args, kwargs)


def test_hints_on_user_tasks_are_enforced() -> None:
    catalogue = Catalogue()

    @catalogue.register(name="images.resize")
    def resize(path: str, width: int, sharpen: bool = False, tags: list[str] | None = None) -> str:
        return f"{path}@{width}"

    definition = catalogue.get("images.resize")
    definition.check_arguments(["a.png", 100], {"sharpen": True, "tags": ["x"]})
    definition.check_arguments(["a.png", 100], {"tags": None})
    with pytest.raises(InvalidArguments, match="'width' must be int"):
        definition.check_arguments(["a.png", 1.5], {})
    with pytest.raises(InvalidArguments, match="'tags'"):
        definition.check_arguments(["a.png", 1], {"tags": "x"})


def test_float_parameters_accept_ints_but_not_bools() -> None:
    catalogue = Catalogue()
    catalogue.register(lambda x: x, name="f")

    @catalogue.register
    def scale(x: float) -> float:
        return x

    catalogue.get("scale").check_arguments([1], {})
    catalogue.get("scale").check_arguments([1.5], {})
    with pytest.raises(InvalidArguments):
        catalogue.get("scale").check_arguments([False], {})
