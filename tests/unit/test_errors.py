"""The public names of common.errors, pinned (as httpx pins its exports), and the shape of its tree."""

from __future__ import annotations

import inspect

from common import errors
from common.errors import DispatchError, InputError, TaskError

PUBLIC = {
    "EXIT_BROKEN_PIPE",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_REDIS",
    "EXIT_TASKS_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "BatchIncomplete",
    "BatchInterrupted",
    "BatchNotFound",
    "Cancelled",
    "ChunkFailed",
    "ConfigurationError",
    "DispatchError",
    "InputError",
    "InvalidArguments",
    "LimitExceeded",
    "MalformedInput",
    "OutputFailed",
    "PayloadError",
    "RedisOutOfMemory",
    "RedisUnavailable",
    "RefusedJob",
    "RemoteTaskError",
    "RemoteTraceback",
    "TaskError",
    "TaskLost",
    "TaskNotOffered",
    "TaskTimeout",
    "UnknownTask",
    "WaitTimeout",
    "WorkerDied",
}


def test_the_public_names_are_pinned() -> None:
    assert set(errors.__all__) == PUBLIC
    defined = {name for name in vars(errors) if not name.startswith("_") and name != "annotations"}
    assert defined == PUBLIC  # nothing public outside __all__


def test_every_exported_class_belongs_to_this_module_and_is_documented() -> None:
    for name in PUBLIC:
        value = getattr(errors, name)
        if inspect.isclass(value):
            assert value.__module__ == "common.errors" and value.__doc__, name


def test_the_docstring_draws_every_class() -> None:
    assert errors.__doc__ is not None
    for name in PUBLIC:
        if inspect.isclass(getattr(errors, name)):
            assert name in errors.__doc__, name


def test_task_errors_are_results_not_exits() -> None:
    dual = {"LimitExceeded", "MalformedInput"}  # a task's result, and the whole input's refusal
    for name in PUBLIC:
        cls = getattr(errors, name)
        if inspect.isclass(cls) and issubclass(cls, TaskError):
            assert issubclass(cls, DispatchError) == (name in dual), name
    assert not issubclass(TaskError, DispatchError) and not hasattr(TaskError, "exit_code")
    assert all(issubclass(getattr(errors, name), InputError) for name in (*dual, "TaskNotOffered"))


def test_the_wire_visible_type_names_are_the_class_names() -> None:
    # Results report these names; users match on them.
    names = ["MalformedInput", "LimitExceeded", "TaskNotOffered", "UnknownTask", "InvalidArguments", "TaskTimeout"]
    assert [getattr(errors, name).__name__ for name in names] == names


def test_a_batch_interrupted_is_still_a_keyboard_interrupt() -> None:
    assert issubclass(errors.BatchInterrupted, KeyboardInterrupt)
    assert not issubclass(errors.BatchInterrupted, Exception)
