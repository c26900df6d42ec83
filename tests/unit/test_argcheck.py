"""Argument checks (common.argcheck): the full check names the task and the argument, and the fast
types it precomputes never accept what the full check refuses."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.argcheck import check_arguments, fast_types, matches, render_signature
from common.errors import InvalidArguments


def sample(a: int, b: float = 1.0, *, c: str = "x") -> None: ...


SIGNATURE = inspect.signature(sample)
HINTS = typing.get_type_hints(sample)


def test_a_wrong_type_names_the_task_and_the_argument() -> None:
    with pytest.raises(InvalidArguments, match=r"^ns\.sample: argument 'a' must be int, got str 'one'"):
        check_arguments("ns.sample", SIGNATURE, HINTS, ["one"], {})


def test_a_wrong_arity_shows_the_signature_without_annotations() -> None:
    with pytest.raises(InvalidArguments, match=r"^sample\(a, b=1\.0, \*, c='x'\): missing"):
        check_arguments("sample", SIGNATURE, HINTS, [], {})
    assert render_signature(SIGNATURE) == "(a, b=1.0, *, c='x')"


def test_values_of_the_right_types_pass() -> None:
    check_arguments("sample", SIGNATURE, HINTS, [1, 2], {"c": "y"})


def test_fast_types_cover_plain_positional_parameters_and_their_required_count() -> None:
    allowed, required = fast_types(SIGNATURE, HINTS)
    assert required == 1
    assert allowed == (frozenset({int}), frozenset({int, float}))


def test_a_hint_that_depends_on_the_value_has_no_fast_types() -> None:
    def pick(mode: Literal["a", "b"]) -> None: ...

    assert fast_types(inspect.signature(pick), typing.get_type_hints(pick)) == (None, 0)


JSON = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.just([]) | st.just({})
HINT_CHOICES: list[Any] = [int, float, str, bool, list, dict, type(None), int | None, float | str, Any, object]


@given(st.sampled_from(HINT_CHOICES), JSON)
def test_the_fast_types_accept_exactly_what_the_full_check_accepts(hint: Any, value: Any) -> None:
    def task(x: Any) -> None: ...

    task.__annotations__ = {"x": hint}
    signature, hints = inspect.signature(task), {"x": hint}
    allowed, _required = fast_types(signature, hints)
    assert allowed is not None
    assert (type(value) in allowed[0]) == matches(value, hint)
