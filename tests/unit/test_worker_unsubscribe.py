"""Stopping RQ's command-channel listener: the pub/sub is closed by exactly one thread."""

from __future__ import annotations

import threading
from typing import Any

import fakeredis

from common import default_catalogue
from common.settings import Settings
from worker.runner import FastChunkWorker
from worker.runtime import Runtime


class Listener:
    """A PubSubWorkerThread stand-in that may outlive the bounded wait of its stop()."""

    def __init__(self, ends_when_stopped: bool) -> None:
        self.ends_when_stopped = ends_when_stopped
        self.alive = True

    def stop(self, timeout: float | None = None) -> None:
        if self.ends_when_stopped:
            self.alive = False

    def is_alive(self) -> bool:
        return self.alive


class PubSub:
    def __init__(self) -> None:
        self.closed_by: list[str] = []

    def unsubscribe(self) -> None:
        pass

    def close(self) -> None:
        self.closed_by.append(threading.current_thread().name)


def worker_with(listener: Listener, pubsub: PubSub) -> FastChunkWorker:
    client = fakeredis.FakeRedis()
    worker = FastChunkWorker(Runtime(Settings(), default_catalogue, "w"), client, ["tasks"])
    worker.pubsub_thread = listener  # type: ignore[assignment]
    worker.pubsub = pubsub  # type: ignore[assignment]
    return worker


def test_the_pubsub_is_closed_once_its_listener_has_ended() -> None:
    pubsub: Any = PubSub()
    worker_with(Listener(ends_when_stopped=True), pubsub).unsubscribe()
    assert pubsub.closed_by == [threading.current_thread().name]


def test_a_listener_still_running_closes_its_pubsub_itself() -> None:
    # PubSub.reset() is not thread-safe: closing it here while the listener's loop closes it too
    # raised AttributeError out of the worker's teardown.
    pubsub: Any = PubSub()
    worker_with(Listener(ends_when_stopped=False), pubsub).unsubscribe()
    assert pubsub.closed_by == []
