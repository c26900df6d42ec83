"""A stop signal that reaches a worker process before RQ installs its handlers is not lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import fakeredis
import pytest

from common import Settings, default_catalogue
from worker import runner
from worker.runner import FastChunkWorker, defer_stop_signals
from worker.runtime import Runtime


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    runner._early_stop.clear()


@pytest.mark.usefixtures("restore_handlers")
def test_sigterm_before_rq_handlers_becomes_a_warm_stop(fake_client: fakeredis.FakeRedis) -> None:
    defer_stop_signals()
    os.kill(os.getpid(), signal.SIGTERM)  # what the supervisor forwards during RQ's bootstrap
    worker = FastChunkWorker(Runtime(Settings.from_env({}), default_catalogue, "early"), fake_client, ["tasks"])
    assert not worker._stop_requested
    worker._install_signal_handlers()
    assert worker._stop_requested


@pytest.mark.usefixtures("restore_handlers")
def test_without_an_early_signal_the_worker_runs(fake_client: fakeredis.FakeRedis) -> None:
    defer_stop_signals()
    worker = FastChunkWorker(Runtime(Settings.from_env({}), default_catalogue, "calm"), fake_client, ["tasks"])
    worker._install_signal_handlers()
    assert not worker._stop_requested
