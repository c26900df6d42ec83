"""The liveness beat and the dead-namesake rule, on fakeredis: what a restore writes is what RQ's
register_birth (plus our advertisement) wrote."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import subprocess
import sys

import fakeredis
from rq.utils import utcformat

from common import default_catalogue, keys
from common.settings import Settings
from tests.support import wait_until
from worker.liveness import dead_namesake, process_alive
from worker.runner import FastChunkWorker
from worker.runtime import Runtime
from worker.stopreason import StopReason

UTC = datetime.timezone.utc
HOST = socket.gethostname()


def registered(client: fakeredis.FakeRedis, settings: Settings, queues: list[str]) -> FastChunkWorker:
    worker = FastChunkWorker(Runtime(settings, default_catalogue, "w"), client, queues)
    worker.register_birth()
    worker.stop_heartbeat()  # beats are sent by hand below
    worker.set_state("idle")
    return worker


def snapshot(client: fakeredis.FakeRedis, worker: FastChunkWorker) -> tuple[dict[bytes, bytes], list[set[bytes]]]:
    fields: dict[bytes, bytes] = client.hgetall(worker.key)  # type: ignore[assignment]
    fields.pop(b"last_heartbeat")
    sets = [client.smembers(key) for key in sorted(k.decode() for k in client.keys(keys.RQ_WORKERS + "*"))]
    return fields, sets  # type: ignore[return-value]


def test_a_beat_restores_exactly_what_registration_wrote(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    worker = registered(fake_client, fake_settings, ["tasks", "urgent"])
    before = snapshot(fake_client, worker)
    registration_ttl = fake_client.ttl(worker.key)
    assert worker.beat()
    assert snapshot(fake_client, worker) == before  # nothing missing: nothing changes

    fake_client.flushall()
    assert worker.beat()
    assert snapshot(fake_client, worker) == before
    assert fake_client.ttl(worker.key) == registration_ttl == worker.worker_ttl + 60


def test_a_beat_fills_a_stripped_record_and_renews_a_short_ttl(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    worker = registered(fake_client, fake_settings, ["tasks"])
    before = snapshot(fake_client, worker)
    fake_client.delete(worker.key)
    fake_client.hset(worker.key, "last_heartbeat", utcformat(datetime.datetime.now(UTC)))
    fake_client.expire(worker.key, fake_settings.heartbeat_ttl)  # what a chunk's start leaves behind
    assert worker.beat()
    assert snapshot(fake_client, worker) == before
    assert fake_client.ttl(worker.key) == worker.worker_ttl + 60


def test_a_beat_never_overwrites_the_state_of_an_intact_record(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    worker = registered(fake_client, fake_settings, ["tasks"])
    fake_client.hset(worker.key, "state", "busy")  # written by the main thread meanwhile
    worker.beat()
    assert fake_client.hget(worker.key, "state") == b"busy"


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def stamp(seconds_ago: float) -> str:
    return utcformat(datetime.datetime.now(UTC) - datetime.timedelta(seconds=seconds_ago))


def test_dead_namesake_with_an_advertisement() -> None:
    fresh = stamp(0)
    assert dead_namesake({"dw_host": HOST, "dw_pid": str(dead_pid()), "last_heartbeat": fresh}, HOST, 10)
    assert dead_namesake({"dw_host": HOST, "dw_pid": str(os.getpid())}, HOST, 10)  # this process, re-registering
    assert dead_namesake({"dw_host": HOST, "dw_pid": str(os.getppid()), "last_heartbeat": stamp(999)}, HOST, 10) is None
    assert dead_namesake({"dw_host": "elsewhere", "dw_pid": str(dead_pid())}, HOST, 10) is None


def test_dead_namesake_stripped_of_its_advertisement() -> None:
    assert dead_namesake({"last_heartbeat": stamp(30)}, HOST, 10)
    assert dead_namesake({"state": "idle"}, HOST, 10)
    assert dead_namesake({"last_heartbeat": stamp(1)}, HOST, 10) is None  # a live worker restores it soon


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # It exits, and stays a zombie until waited for.
        wait_until(lambda: not process_alive(child.pid), 30, "the child to exit", interval=0.01)
        assert os.path.exists(f"/proc/{child.pid}") or not sys.platform.startswith("linux")
    finally:
        child.wait()
    assert process_alive(os.getpid())


def test_stop_reason_notes_the_error_rqs_loop_quits_on() -> None:
    reason = StopReason()
    rq_log = logging.getLogger("rq.worker")
    with reason.watching(rq_log):
        rq_log.info("Worker %s: done, quitting", "w")
        assert reason.describe(burst=True) == "burst done, queues empty"
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            rq_log.error("Worker %s: found an unhandled exception, quitting...", "w", exc_info=True)
    assert reason.describe(burst=True) == "error: RuntimeError: boom"
    assert reason.error is not None


def test_stop_reason_names_the_signal() -> None:
    reason = StopReason()
    reason.signalled(signal.SIGTERM)
    assert reason.describe(burst=False) == "SIGTERM received: warm shutdown"
    reason.signalled(signal.SIGINT, cold=True)
    assert reason.describe(burst=False).startswith("SIGINT received twice: cold shutdown")
