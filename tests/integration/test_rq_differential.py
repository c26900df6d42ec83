"""Every write of RQ's records made without RQ's code equals RQ's own, on a real redis-server.

The same chunk job runs through RQ's own per-job path (ChunkWorker) and through the fast path
(FastChunkWorker: worker/lean*.py), and the whole Redis state is compared: every key, its type, TTL and
value (hash fields, list order, set members, sorted-set members and scores, stream entries), with ids
and timestamps normalised. Compared: before the job (worker registered and idle, job queued), while it
runs (from inside the task), after it succeeded, and after it failed. The enqueue template and the quick
job restore are compared with RQ's enqueue and RQ's Job.fetch the same way. It runs under whichever RQ
is installed (CI runs it on each supported major), and it is what common.rqcompat.VERIFIED_SERIES rests on.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from common import keys
from common.catalogue import Catalogue
from common.jobdata import ORJSON_MARK
from common.rqcompat import FAST_PATH_ENV, RQ_VERSION, VERIFIED_SERIES
from common.settings import Settings
from common.wire import TaskSpec, encode_chunk
from dispatcher.session import Session
from dispatcher.submit import BatchSubmitter
from tests.conftest import builtin_catalogue
from worker import runtime as runtime_module
from worker.job import SafeJob
from worker.lean_restore import JobFactory
from worker.runner import ChunkWorker, FastChunkWorker, worker_class
from worker.runtime import Runtime

pytestmark = pytest.mark.integration

TOLERANCE = 3.0
"""Seconds two TTLs or time-based scores taken a moment apart may differ by."""

_UUID = re.compile(r"[0-9a-f]{32}")
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")
_EPOCH = re.compile(r"1\d{9}(\.\d+)?")
_STREAM_ID = re.compile(r"\d{13}-\d+")
_DURATIONS = {"total_working_time"}
"""Fields holding how long something took, which no two runs share."""


class Near:
    """A number compared within TOLERANCE (TTLs, scores relative to now)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Near) and abs(self.value - other.value) <= TOLERANCE

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"~{self.value:.0f}"


def _text(raw: bytes) -> str:
    text = raw.decode(errors="replace")
    if _EPOCH.fullmatch(text) or _ISO.fullmatch(text):
        return "<time>"
    if _STREAM_ID.fullmatch(text):
        return "<stream-id>"
    return _ISO.sub("<time>", _UUID.sub("<id>", text))


def _job_data(raw: bytes) -> Any:
    """A job's `data` as the call it encodes: RQ's enqueue zlibs the JSON, ours marks orjson's (both
    are read back the same way; tests/unit/test_enqueue.py holds the rest)."""
    with contextlib.suppress(zlib.error):
        raw = zlib.decompress(raw)
    call = json.loads(raw)
    for arg in call[2]:
        if isinstance(arg, dict):
            arg.pop(ORJSON_MARK, None)
    return call


def _hash(key: str, raw: dict[bytes, bytes]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        field = name.decode()
        if field == "ip_address":  # the client's port
            fields[field] = value.decode().rpartition(":")[0]
        elif field in _DURATIONS:
            fields[field] = "<duration>"
        elif field == "data" and key.startswith(keys.RQ_JOB_PREFIX):
            fields[field] = _job_data(value)
        else:
            fields[field] = _text(value)
    return fields


def _entry(fields: dict[bytes, bytes]) -> dict[str, Any]:
    entry: dict[str, Any] = {name.decode(): _text(value) for name, value in fields.items()}
    if "r" in entry:  # our result rows end with how long the task took (common.wire)
        entry["r"] = [[*row[:-1], "<duration>"] for row in json.loads(fields[b"r"])]
    return entry


def snapshot(client: redis.Redis, only: Callable[[str], bool] = lambda key: True) -> dict[str, Any]:
    """The whole state of `client`'s database, normalised (see the module docstring)."""
    state: dict[str, Any] = {}
    now = time.time()
    for raw_key in sorted(client.scan_iter(count=1000)):
        key = raw_key.decode()
        if not only(key):
            continue
        kind = client.type(raw_key).decode()
        ttl = client.pttl(raw_key)
        value: Any
        if kind == "string":
            value = _text(client.get(raw_key) or b"")
        elif kind == "hash":
            value = _hash(key, client.hgetall(raw_key))  # type: ignore[arg-type]
        elif kind == "list":
            value = [_text(item) for item in client.lrange(raw_key, 0, -1)]  # type: ignore[union-attr]
        elif kind == "set":
            value = sorted(_text(item) for item in client.smembers(raw_key))  # type: ignore[union-attr]
        elif kind == "zset":
            pairs = client.zrange(raw_key, 0, -1, withscores=True)
            value = [(_text(member), Near(score - now) if score > 1e9 else score) for member, score in pairs]  # type: ignore[union-attr]
        elif kind == "stream":
            value = [_entry(fields) for _, fields in client.xrange(raw_key)]  # type: ignore[union-attr]
        else:
            value = f"<{kind}>"
        state[_text(raw_key)] = (kind, Near(ttl / 1000) if ttl > 0 else ttl, value)
    return state


def _hold_catalogue(on_run: Callable[[], None]) -> Catalogue:
    """The built-in tasks, with `sleep` replaced by a task that calls `on_run` (the job is then mid-run)."""
    catalogue = Catalogue()
    for definition in builtin_catalogue():
        if definition.name != "sleep":
            catalogue.register(definition.func, name=definition.name)

    def hold(seconds: float) -> float:
        on_run()
        return seconds

    catalogue.register(hold, name="sleep")
    return catalogue


@pytest.fixture
def settings() -> Settings:
    # No heartbeat-thread beats during a run: both ways see the same writes, and only theirs.
    return Settings.from_env({}, heartbeat_interval=60, heartbeat_ttl=120)


def run_both_ways(
    client: redis.Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    submit: Callable[[], Callable[[], None]],
    queues: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    """Run the job `submit` queues (returning what checks its outcome) with RQ's own path, then the
    fast path, each on an empty database; the snapshots of each, by moment, for both ways."""
    taken: dict[str, dict[str, Any]] = {}
    for way in ("rq", "fast"):
        client.flushall()
        monkeypatch.setenv(FAST_PATH_ENV, "0" if way == "rq" else "1")
        cls = worker_class()
        assert cls is (ChunkWorker if way == "rq" else FastChunkWorker)
        taken[way] = _run_one_way(client, settings, cls, submit, [settings.queue, *queues])
    return taken


def _run_one_way(
    client: redis.Redis,
    settings: Settings,
    cls: type[ChunkWorker],
    submit: Callable[[], Callable[[], None]],
    queues: list[str],
) -> dict[str, Any]:
    moments: dict[str, Any] = {}
    catalogue = _hold_catalogue(lambda: moments.setdefault("during", snapshot(client)))
    runtime = Runtime(settings, catalogue, "diff")
    runtime_module.configure(runtime)
    check = submit()
    worker = cls(runtime, client, queues)
    dequeue = worker.dequeue_job_and_maintain_ttl

    def look_then_dequeue(*args: Any, **kwargs: Any) -> Any:
        # First call: registered, idle, the job queued. Second: the job done, and RQ's work loop
        # back where it waits for the next one.
        moments.setdefault("before" if "before" not in moments else "after", snapshot(client))
        return dequeue(*args, **kwargs)

    worker.dequeue_job_and_maintain_ttl = look_then_dequeue  # type: ignore[method-assign]
    # No command channel: it writes no key, and its thread would hold the burst's end for a minute.
    worker.subscribe = lambda: None  # type: ignore[method-assign]
    # No heartbeat thread: it is the same on both paths, and its ticks (the pulse, the registration's
    # renewal) come on its own clock, so whether a snapshot catches one would be timing, not a path.
    worker._start_heartbeat_thread = lambda: None  # type: ignore[method-assign]
    try:
        worker.work(burst=True)
        check()
    finally:
        runtime_module.reset()
    return moments


def assert_same(taken: dict[str, dict[str, Any]], moments: list[str]) -> None:
    assert sorted(taken["rq"]) == sorted(taken["fast"]) == sorted(moments)
    for moment in moments:
        theirs, ours = taken["rq"][moment], taken["fast"][moment]
        # Every key is ours or under RQ's prefix (RQ_KEY_PREFIX, which CI sets in one leg).
        assert [key for key in ours if not key.startswith((keys.PREFIX, keys.RQ_PREFIX))] == [], moment
        assert sorted(ours) == sorted(theirs), moment
        differences = [_difference(key, ours[key], theirs[key]) for key in theirs if ours[key] != theirs[key]]
        assert not differences, "\n".join([f"{moment} (ours != RQ's):", *differences])


def _difference(key: str, ours: Any, theirs: Any) -> str:
    """What differs in one key, readably (ours, then RQ's)."""
    if ours[:2] != theirs[:2] or not isinstance(ours[2], dict):
        return f"{key}: {ours} != {theirs}"
    fields = sorted(set(ours[2]) | set(theirs[2]))
    return f"{key}: " + ", ".join(
        f"{name}: {ours[2].get(name)!r} != {theirs[2].get(name)!r}"
        for name in fields
        if ours[2].get(name) != theirs[2].get(name)
    )


def test_the_installed_rq_is_a_verified_series() -> None:
    """CI runs this file on each series VERIFIED_SERIES lists; a series listed but never run is not verified."""
    assert RQ_VERSION[:2] in VERIFIED_SERIES


@pytest.mark.parametrize("queues", [(), ("more",)], ids=["one queue (BLMOVE)", "two queues (BLPOP)"])
def test_a_chunk_job_that_succeeds(
    real_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch, queues: tuple[str, ...]
) -> None:
    def submit() -> Callable[[], None]:
        session = Session(real_client, settings, batch_id="diff")
        index = session.submit("sleep", [0])

        def check() -> None:
            assert session.result(index, timeout=10).value == 0
            session.close()

        return check

    taken = run_both_ways(real_client, settings, monkeypatch, submit, queues)
    assert_same(taken, ["before", "during", "after"])
    during = taken["fast"]["during"]
    assert during[keys.rq_job_key("diff-0")][2]["status"] == "started"  # the snapshot did catch it mid-run


def test_a_chunk_job_that_fails(real_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def submit() -> Callable[[], None]:
        session = Session(real_client, settings, batch_id="diff")
        session.submit("add", [1, 2])
        job_key = keys.rq_job_key("diff-0")
        call = json.loads(real_client.hget(job_key, "data"))  # type: ignore[arg-type]
        call[2][0]["v"] = 99  # a payload version no worker reads: the job itself fails
        real_client.hset(job_key, "data", json.dumps(call))

        def check() -> None:
            assert real_client.zrange(keys.rq_failed_key(settings.queue), 0, -1) == [b"diff-0"]
            session.close()

        return check

    taken = run_both_ways(real_client, settings, monkeypatch, submit)
    assert_same(taken, ["before", "after"])


def test_a_failing_job_with_retries_left_is_retried_the_same_way(
    real_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def submit() -> Callable[[], None]:
        queue = Queue(settings.queue, connection=real_client, serializer=JSONSerializer, job_class=SafeJob)
        payload = encode_chunk("diff", 0, 60, [])
        payload["v"] = 99
        queue.enqueue(keys.CHUNK_FUNCTION, payload, job_id="diff-0", retry=Retry(max=1), result_ttl=0, failure_ttl=60)
        return lambda: None

    taken = run_both_ways(real_client, settings, monkeypatch, submit)
    assert_same(taken, ["before", "after"])


def _rq_enqueue(client: redis.Redis, settings: Settings, batch_id: str, tasks: list[TaskSpec]) -> None:
    """The chunk job through RQ's own enqueue, with the arguments the template stands for."""
    queue = Queue(settings.queue, connection=client, serializer=JSONSerializer)
    ttl = settings.result_ttl
    job = queue.prepare_data(
        keys.CHUNK_FUNCTION,
        args=(encode_chunk(batch_id, 0, ttl, tasks),),
        job_id=keys.chunk_job_id(batch_id, 0),
        timeout=-1,
        result_ttl=0,
        failure_ttl=ttl,
        ttl=ttl,
        description=f"batch {batch_id} chunk 0 ({len(tasks)} tasks)",
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
    )
    queue.enqueue_many([job])


def _our_enqueue(client: redis.Redis, settings: Settings, batch_id: str, tasks: list[TaskSpec]) -> None:
    submitter = BatchSubmitter(client, settings, batch_id, chunk_size=len(tasks))
    submitter.start("test")
    submitter.add_chunk(tasks)
    submitter.flush()


def _rq_keys(key: str) -> bool:
    return not key.startswith(keys.PREFIX)


@pytest.mark.parametrize("retries", [0, 3])
def test_the_enqueue_template_writes_what_rqs_enqueue_writes(real_client: redis.Redis, retries: int) -> None:
    settings = Settings.from_env({}, job_retries=retries, result_ttl=1234, queue="q.a:b-c")
    tasks = [TaskSpec(i, "add", [i, i], {"k": "é"} if i % 2 else {}, f"id{i}" if i % 3 else None) for i in range(3)]
    _rq_enqueue(real_client, settings, "same", tasks)
    theirs = snapshot(real_client, _rq_keys)
    real_client.flushall()
    _our_enqueue(real_client, settings, "same", tasks)
    ours = snapshot(real_client, _rq_keys)
    assert keys.rq_job_key("same-0") in theirs
    assert ours == theirs


def _job_state(job: Job) -> dict[str, Any]:
    """Everything a job object holds once its data is loaded, but its connection and serializer."""
    job.args  # noqa: B018 - loads the data (RQ's restore does so lazily)
    return {name: value for name, value in vars(job).items() if name not in ("connection", "serializer")}


@pytest.mark.parametrize("writer", ["rq", "template"])
def test_the_quick_restore_builds_the_job_rqs_fetch_builds(real_client: redis.Redis, writer: str) -> None:
    settings = Settings.from_env({}, job_retries=2)
    tasks = [TaskSpec(0, "add", [1, 2], {}, None)]
    (_rq_enqueue if writer == "rq" else _our_enqueue)(real_client, settings, "same", tasks)
    job_id = keys.chunk_job_id("same", 0)
    fields: dict[bytes, bytes] = real_client.hgetall(keys.rq_job_key(job_id))  # type: ignore[assignment]
    fetched = SafeJob.fetch(job_id, connection=real_client, serializer=JSONSerializer)
    restored = JobFactory(SafeJob, real_client, JSONSerializer).restore(job_id, fields)
    assert type(restored) is SafeJob
    assert _job_state(restored) == _job_state(fetched)
