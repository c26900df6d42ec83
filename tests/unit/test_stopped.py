"""What a batch that stopped early says (dispatcher.stopped): the record's reason and the user's error."""

from __future__ import annotations

import redis

from common.errors import BatchInterrupted, RedisOutOfMemory, RedisUnavailable
from common.settings import Settings
from dispatcher.stopped import abort_reason, goes_on_note, in_flight_error, stopped_note


def test_abort_reasons() -> None:
    assert abort_reason(KeyboardInterrupt()) == "interrupted"
    assert abort_reason(BrokenPipeError()) == "the dispatcher's output was closed"
    assert abort_reason(redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")) == (
        "Redis out of memory"
    )
    assert abort_reason(ValueError("bad")) == "ValueError: bad"


def test_notes_say_what_goes_on_and_how_to_follow_it() -> None:
    assert "`dispatcher results b1`" in goes_on_note("b1") and "`dispatcher cancel b1`" in goes_on_note("b1")
    assert stopped_note("b1", 0, None) == "nothing of batch b1 was enqueued"
    note = stopped_note("b1", 5, "ConnectionError: gone")
    assert note.startswith("batch b1 stopped after 5 tasks were enqueued")
    assert note.endswith(
        "(its record could not be marked aborted: ConnectionError: gone; the next reader marks it abandoned)"
    )


def test_in_flight_errors_name_the_batch(fake_settings: Settings) -> None:
    interrupted = in_flight_error(KeyboardInterrupt(), fake_settings, "NOTE")
    assert isinstance(interrupted, BatchInterrupted) and str(interrupted) == "interrupted; NOTE"
    lost = in_flight_error(redis.ConnectionError("refused"), fake_settings, "NOTE")
    assert isinstance(lost, RedisUnavailable) and str(lost).endswith("; NOTE")
    full = in_flight_error(redis.ResponseError("OOM command not allowed"), fake_settings, "NOTE")
    assert isinstance(full, RedisOutOfMemory) and str(full).endswith(": NOTE")
    already = RedisUnavailable("the guard's own message")
    assert in_flight_error(already, fake_settings, "NOTE") is already
    for other in (BrokenPipeError(), ValueError("x")):
        assert in_flight_error(other, fake_settings, "NOTE") is other
