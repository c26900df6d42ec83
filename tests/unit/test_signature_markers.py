"""Argument errors show the task's signature as Python writes it, markers included."""

from __future__ import annotations

import pytest

from common.catalogue import Catalogue
from common.errors import InvalidArguments


def test_argument_errors_show_positional_only_and_keyword_only_markers() -> None:
    catalogue = Catalogue()

    @catalogue.register
    def f(a: int, /, b: int, *, c: int) -> int:
        return a + b + c

    with pytest.raises(InvalidArguments) as caught:
        catalogue.get("f").check_arguments([1, 2, 3], {})
    assert str(caught.value).startswith("f(a, /, b, *, c): ")


def test_argument_errors_show_defaults_and_variadic_parameters() -> None:
    catalogue = Catalogue()

    @catalogue.register(name="ns.g")
    def g(a: str, b: int = 2, *rest: int, flag: bool = False, **extra: int) -> None:
        return None

    with pytest.raises(InvalidArguments) as caught:
        catalogue.get("ns.g").check_arguments([], {})
    assert str(caught.value).startswith("ns.g(a, b=2, *rest, flag=False, **extra): ")
