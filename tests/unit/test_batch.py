"""Submitting a batch (dispatcher.batch): what its record says about the input it read (fakeredis)."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from common import keys
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.lease import settle
from dispatcher.lines import INPUT_IDLE
from dispatcher.reader import LiveItem


def producer_interrupted_after(lines: int) -> Iterator[LiveItem]:
    """A live producer that sent `lines` tasks, then waited, then the user pressed Ctrl-C."""
    for i in range(lines):
        yield TaskSpec(i, "add", [i, 1])
    yield INPUT_IDLE
    raise KeyboardInterrupt


def test_a_live_input_stopped_early_records_the_lines_it_read(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    options = SubmitOptions(streaming=True, wait=False)
    with pytest.raises(KeyboardInterrupt):
        submit_batch(fake_client, fake_settings, producer_interrupted_after(3), options, print, batch_id="live")
    record = settle(fake_client, "live")
    assert (record.state, record.total) == ("aborted", 3)
    # Three lines were read, all sent: nothing was read and left unsent (not the look-ahead's limit).
    assert fake_client.hget(keys.batch_key("live"), "read") == b"3"
