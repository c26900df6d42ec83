"""The verdict on a batch whose submitter is gone, the lease that keeps it from coming too early, and
the states `dispatcher status` shows (fakeredis)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import fakeredis
import pytest
import redis

from common import keys
from common.errors import BatchIncomplete
from common.settings import Settings
from common.wire import TaskSpec
from dispatcher.batch import await_batch
from dispatcher.lease import LeaseKeeper, holder, holder_is_dead, settle
from dispatcher.output import incomplete_summary
from dispatcher.status import display_state, recent_batches
from dispatcher.submit import BatchSubmitter
from tests.support import wait_until
from tests.unit.test_pipeline_fakeredis import run_worker


def submitting(client: fakeredis.FakeRedis, settings: Settings, batch_id: str, tasks: int) -> BatchSubmitter:
    """A batch with `tasks` tasks sent and its submitter still (apparently) at work."""
    submitter = BatchSubmitter(client, settings, batch_id, chunk_size=1)
    submitter.start("test")
    for i in range(tasks):
        submitter.add_chunk([TaskSpec(i, "add", [i, 1])], auto_flush=False)
    submitter.flush()
    return submitter


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_two_readers_agree_once_the_lease_is_gone(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter = submitting(fake_client, fake_settings, "b1", 3)
    assert settle(fake_client, "b1").state == "submitting"  # the lease lives: no verdict yet
    submitter._lease.stop()
    fake_client.delete(keys.submitter_key("b1"))  # what its expiry does
    first, second = settle(fake_client, "b1"), settle(fake_client, "b1")
    assert first == second
    assert (first.state, first.total, first.sent, first.incomplete) == ("abandoned", 3, 3, True)
    assert fake_client.hget(keys.batch_key("b1"), "state") == b"abandoned"


def test_a_dead_submitter_on_this_host_is_known_at_once(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitter = submitting(fake_client, fake_settings, "b2", 2)
    submitter._lease.stop()
    fake_client.set(keys.submitter_key("b2"), f"{socket.gethostname()}:{dead_pid()}", ex=600)
    assert settle(fake_client, "b2").state == "abandoned"
    assert not fake_client.exists(keys.submitter_key("b2"))


def test_a_submitter_elsewhere_or_alive_is_waited_for(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitting(fake_client, fake_settings, "b3", 2)
    assert fake_client.get(keys.submitter_key("b3")) == holder().encode()
    assert settle(fake_client, "b3").state == "submitting"  # this very process holds it
    fake_client.set(keys.submitter_key("b3"), f"another-host:{dead_pid()}", ex=600)
    assert settle(fake_client, "b3").state == "submitting"  # another host: only the lease's expiry tells
    assert not holder_is_dead(f"{socket.gethostname()}:{os.getpid()}")


def test_a_submitter_found_abandoned_takes_no_more(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter = submitting(fake_client, fake_settings, "b4", 2)
    fake_client.delete(keys.submitter_key("b4"))  # its lease lapsed while it was cut off
    settle(fake_client, "b4")
    submitter.add_chunk([TaskSpec(2, "add", [2, 1])], auto_flush=False)
    with pytest.raises(BatchIncomplete, match="found abandoned"):
        submitter.flush()
    assert fake_client.hget(keys.batch_key("b4"), "total") == b"2"
    assert fake_client.llen(keys.rq_queue_key("tasks")) == 2


def test_results_of_an_abandoned_batch_say_what_was_never_submitted(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitter = submitting(fake_client, fake_settings, "b5", 0)
    submitter.read_ahead, submitter.read_all = 10, True  # the whole input (10 lines) was read ahead
    for i in range(4):
        submitter.add_chunk([TaskSpec(i, "add", [i, 1])], auto_flush=False)
    submitter.flush()
    submitter._lease.stop()
    fake_client.delete(keys.submitter_key("b5"))
    run_worker(fake_client, fake_settings)
    summary = await_batch(fake_client, fake_settings, "b5", lambda r: None, timeout=10)
    assert summary.total == 4 and summary.incomplete is not None
    assert summary.incomplete.unsubmitted == 6
    text = incomplete_summary(summary.incomplete)
    assert "abandoned" in text and "6 input lines were never submitted" in text and "4 tasks" in text


def test_an_aborted_batch_records_why_and_what_was_sent(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    submitter = submitting(fake_client, fake_settings, "b6", 3)
    submitter.add_chunk([TaskSpec(3, "add", [3, 1])], auto_flush=False)  # read, never sent
    assert submitter.abort("interrupted") is None
    record = settle(fake_client, "b6")
    assert (record.state, record.total, record.reason, record.incomplete) == ("aborted", 3, "interrupted", True)
    assert not fake_client.exists(keys.submitter_key("b6"))


@pytest.mark.parametrize(
    ("state", "total", "done", "shown"),
    [
        ("submitted", 5, 5, "finished"),
        ("submitted", 5, 3, "submitted"),
        ("aborted", 3, 3, "aborted"),
        ("abandoned", 3, 3, "abandoned"),
        ("cancelled", 5, 5, "cancelled"),
        ("open", 5, 5, "open"),
    ],
)
def test_status_shows_the_recorded_state(state: str, total: int, done: int, shown: str) -> None:
    assert display_state(state, total, done) == shown


def test_status_records_and_shows_an_abandoned_batch(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    submitter = submitting(fake_client, fake_settings, "b7", 2)
    submitter._lease.stop()
    fake_client.delete(keys.submitter_key("b7"))
    fake_client.hset(keys.batch_key("b7"), "done", 2)
    (batch,) = recent_batches(fake_client)
    assert (batch["state"], batch["total"], batch["sent"], batch["read"]) == ("abandoned", 2, 2, 2)


def test_the_lease_is_renewed_by_a_thread_and_never_recreated(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys.submitter_key("b8")
    fake_client.set(key, holder(), ex=60)
    renewals: list[bool] = []
    plain_set = fake_client.set

    def counted_set(*args: Any, **kwargs: Any) -> Any:
        renewals.append(bool(kwargs.get("xx")))
        return plain_set(*args, **kwargs)

    monkeypatch.setattr(fake_client, "set", counted_set)
    keeper = LeaseKeeper(fake_client, fake_settings, "b8")
    keeper.interval = 0.01  # the test does not wait for a third of a lease
    fake_client.expire(key, 1)
    keeper.start()
    try:
        wait_until(lambda: fake_client.ttl(key) > 1, 10, "the lease renewed to its full length")
        assert all(renewals)  # SET XX: renewing, never creating
        fake_client.delete(key)  # a reader found the batch abandoned
        seen = len(renewals)
        wait_until(lambda: len(renewals) > seen + 2, 10, "more renewals")
        assert not fake_client.exists(key)
    finally:
        keeper.stop()
    stopped = len(renewals)
    fake_client.set(key, holder(), ex=1)
    assert len(renewals) == stopped + 1  # only the test's own SET: the keeper is stopped


def test_status_shows_aborted_even_when_every_task_it_holds_is_done(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    # What an abort after two enqueued tasks leaves, once those two have run.
    fake_client.hset(keys.batch_key("b9"), mapping={"state": "aborted", "total": 2, "sent": 2, "done": 2})
    fake_client.zadd(keys.BATCHES, {"b9": 1.0})
    (batch,) = recent_batches(fake_client)
    assert (batch["state"], batch["total"], batch["done"]) == ("aborted", 2, 2)


OOM = "OOM command not allowed when used memory > 'maxmemory'."


def test_out_of_memory_the_abort_says_so_and_drops_the_lease(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitter = submitting(fake_client, fake_settings, "m1", 3)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise redis.ResponseError(f"Error running script (call to f_0): @user_script:3: -{OOM}")

    monkeypatch.setattr(fake_client, "eval", refused)
    unrecorded = submitter.abort("Redis out of memory")
    assert unrecorded is not None and "OOM" in unrecorded  # said, not suppressed
    assert fake_client.hget(keys.batch_key("m1"), "state") == b"submitting"
    assert not fake_client.exists(keys.submitter_key("m1"))  # so the next reader decides at once

    verdict = settle(fake_client, "m1")  # still out of memory: the verdict without its write
    assert (verdict.state, verdict.total, verdict.recorded) == ("abandoned", 3, False)
    monkeypatch.undo()
    verdict = settle(fake_client, "m1")  # memory is back: the next reader records it
    assert (verdict.state, verdict.total, verdict.recorded) == ("abandoned", 3, True)
    assert fake_client.hget(keys.batch_key("m1"), "state") == b"abandoned"
