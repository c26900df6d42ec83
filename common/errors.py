"""One error tree for the whole system: the errors that end a command carry its exit code.

::

    Exception
    +-- DispatchError ............... ends a command; `exit_code` is what the CLI edge exits with
    |   +-- ConfigurationError ...... 2  a setting or option has an invalid value
    |   +-- InputError .............. 2  the batch input cannot be used as a whole
    |   |   +-- TaskNotOffered ...... 2  no live worker offers a task (under --strict)
    |   |   +-- LimitExceeded ....... 2  the batch is over --max-batch-tasks (also a TaskError)
    |   |   +-- MalformedInput ...... 2  a line is not a task (also a TaskError)
    |   +-- BatchNotFound ........... 2  no such batch (or its results expired)
    |   +-- RedisUnavailable ........ 3  Redis unreachable or refused us
    |   |   +-- RedisOutOfMemory .... 3  Redis is full (maxmemory, noeviction)
    |   +-- WaitTimeout ............. 4  the wait timed out; the batch goes on
    |   +-- BatchIncomplete ......... 5  the batch's input was not all submitted
    |   +-- OutputFailed ............ 74 the results could not be written (a full disk, an I/O error)
    +-- TaskError ................... one task's failed result, never an exit (its class name is
    |   |                             the error type the result reports)
    |   +-- UnknownTask, InvalidArguments, TaskTimeout, ChunkFailed, TaskLost, WorkerDied, Cancelled
    |   +-- LimitExceeded, MalformedInput (above: as a task's result they are results, not exits)
    |   +-- PayloadError
    |   |   +-- RefusedJob
    |   +-- RemoteTaskError ......... what the Python API's `Future.result()` raises for a failed task
    +-- RemoteTraceback ............. a worker's traceback text, the `__cause__` of a RemoteTaskError
    KeyboardInterrupt ............... 130 (the CLI edge), with its message when it is a BatchInterrupted
    +-- BatchInterrupted

The other exit codes are outcomes, not errors: 0 (every task succeeded), 1 (some tasks failed), 141
(stdout was closed, as for any Unix tool killed by SIGPIPE).
"""

from __future__ import annotations

__all__ = [
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
]

EXIT_OK = 0
"""Every task succeeded."""
EXIT_TASKS_FAILED = 1
"""The batch finished but some tasks failed."""
EXIT_USAGE = 2
"""Bad usage, bad configuration or bad input."""
EXIT_REDIS = 3
"""Redis was unreachable or refused us (authentication, TLS)."""
EXIT_TIMEOUT = 4
"""The wait timed out; the batch goes on and its results can be fetched later."""
EXIT_INCOMPLETE = 5
"""The batch's input was not all submitted (its dispatcher stopped or died midway): what was sent ran."""
EXIT_OUTPUT = 74
"""Our output could not be written (a full disk, an I/O error): sysexits' EX_IOERR. The batch goes on."""
EXIT_INTERRUPTED = 130
"""Interrupted by the user (Ctrl-C)."""
EXIT_BROKEN_PIPE = 141
"""The reader of our output went away (`... | head`): 128 + SIGPIPE, what a shell reports for any Unix tool."""


class DispatchError(Exception):
    """Base of the errors that end a command: the CLI edge prints the message and exits `exit_code`."""

    exit_code: int = EXIT_USAGE


class ConfigurationError(DispatchError):
    """A setting or option has an invalid value."""


class InputError(DispatchError):
    """The batch input cannot be used as a whole (for example a malformed line under --strict)."""


class RedisUnavailable(DispatchError):
    """Redis cannot be reached, or refused the connection (wrong password, TLS failure)."""

    exit_code = EXIT_REDIS


class RedisOutOfMemory(RedisUnavailable):
    """Redis refused a write: it is at its `maxmemory` with the `noeviction` policy."""


class WaitTimeout(DispatchError):
    """Results did not all arrive before the deadline."""

    exit_code = EXIT_TIMEOUT


class BatchIncomplete(DispatchError):
    """The batch's input was not all submitted: its dispatcher stopped, or was found gone, midway."""

    exit_code = EXIT_INCOMPLETE


class OutputFailed(DispatchError):
    """Writing the results failed (a full disk, an I/O error; not a closed pipe, which ends quietly)."""

    exit_code = EXIT_OUTPUT


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C while a batch was in flight, saying what became of the batch (still a KeyboardInterrupt)."""


class BatchNotFound(DispatchError):
    """No batch with this id exists (or its results have expired)."""


class TaskNotOffered(InputError):
    """No live worker serves this task name, so nothing was enqueued (skip the check to queue anyway)."""


class TaskError(Exception):
    """Base of the errors that fail one task (never a worker or a batch, and never an exit code).

    Its class name is the error type reported in that task's result.
    """


class UnknownTask(TaskError):
    """The task name is not in the worker's catalogue."""


class InvalidArguments(TaskError):
    """The arguments do not fit the task's signature or types."""


class LimitExceeded(TaskError, InputError):
    """An argument, a result or a batch is larger than its configured bound.

    Over one task's bound it is that task's result; over the batch's bound it refuses the input (exit 2).
    """


class TaskTimeout(TaskError):
    """The task ran longer than its time limit and was stopped."""


class MalformedInput(TaskError, InputError):
    """An input line could not be parsed into a task: that line's result; the input's error under --strict."""


class PayloadError(TaskError):
    """A job or chunk payload on the wire is not in our format."""


class RefusedJob(PayloadError):
    """A job names a function other than ours; it was refused and not run."""


class ChunkFailed(TaskError):
    """The queue gave up on the chunk that held this task (retries exhausted)."""


class TaskLost(TaskError):
    """The task's chunk vanished from Redis (for example Redis restarted without persistence)."""


class WorkerDied(TaskError):
    """The worker process died while running this task, as often as the crash limit allows."""


class Cancelled(TaskError):
    """The batch was cancelled before this task ran."""


class RemoteTaskError(TaskError):
    """A task failed on a worker: carries the remote error type, message and traceback text.

    Raised by the Python API's `Future.result()`; the remote traceback, when the worker sent one,
    is also attached as `__cause__` so that it prints under the local one.
    """

    def __init__(self, remote_type: str, message: str, traceback: str | None = None, task: str = "") -> None:
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_message = message
        self.remote_traceback = traceback
        self.task = task

    def __reduce__(self) -> tuple[type[RemoteTaskError], tuple[str, str, str | None, str]]:
        """Pickle with all four fields (the default would replay only the formatted message)."""
        return (type(self), (self.remote_type, self.remote_message, self.remote_traceback, self.task))


class RemoteTraceback(Exception):
    """The text of a traceback printed on another machine (the `__cause__` of a RemoteTaskError)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'
