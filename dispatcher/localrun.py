"""How a local run ends early: its batch goes with the embedded Redis, so there is nothing to reattach to."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from common.errors import EXIT_INTERRUPTED, DispatchError


class LocalRunEnded(DispatchError):
    """A local run stopped early; its batch went with the embedded Redis (nothing to reattach to)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


LOCAL_MODE_END = "local mode: its Redis and workers stopped with this command, so the rest of the batch does not run"
"""What an early end of `dispatcher run` means for the batch."""

_HINT = r"\bdispatcher (?:results|cancel|status)\b"
"""A command for a batch that outlives its dispatcher, as error messages quote it."""
_REATTACH_HINT = re.compile(_HINT)
_ASIDE_WITH_HINT = re.compile(rf"\s*\([^()]*{_HINT}[^()]*\)")
_CLAUSE_END = re.compile(r"(;\s+|\.\s+|\n+)")


def without_reattach_hints(message: str) -> str:
    """`message` without the clauses that point to commands for a batch that outlives this process."""
    text = _ASIDE_WITH_HINT.sub("", message)
    parts = _CLAUSE_END.split(text)  # clause, separator, clause, separator, ..., clause
    clauses = zip(parts[::2], [*parts[1::2], ""], strict=True)
    kept = [clause + separator for clause, separator in clauses if not _REATTACH_HINT.search(clause)]
    return "".join(kept).rstrip("; \n")


@contextlib.contextmanager
def ended_with_local_redis() -> Iterator[None]:
    """Around a local run: errors and Ctrl-C say that the batch ended with the embedded Redis, and give
    no hint to reattach to it (the hints that a batch on a shared Redis gets)."""
    try:
        yield
    except KeyboardInterrupt:
        raise LocalRunEnded(f"interrupted; {LOCAL_MODE_END}", EXIT_INTERRUPTED) from None
    except DispatchError as exc:
        message = without_reattach_hints(str(exc))
        if message == str(exc):
            raise
        raise LocalRunEnded(f"{message}; {LOCAL_MODE_END}", exc.exit_code) from None
