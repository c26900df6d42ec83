"""Guarantee 9: generated inputs for the input reader, the wire decoders, one task's execution and the
worker's job function. No crash: every input gives a result or the one error type its layer documents.

Deterministic (derandomized, no example database), about 10,000 inputs per run; the count is
checked and recorded at the end of the module.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rq.serializers import JSONSerializer

from common import builtin_tasks  # noqa: F401  (registers the built-in tasks)
from common.catalogue import TASK_NAME_PATTERN, Catalogue, default_catalogue
from common.errors import PayloadError
from common.settings import Settings
from common.wire import (
    MAX_NESTING_DEPTH,
    TaskResult,
    TaskSpec,
    decode_chunk,
    decode_results,
    encode_chunk,
    encode_results,
    encode_value,
)
from dispatcher.lines import LINE_ALLOWANCE_BYTES
from dispatcher.reader import BadInput, read_stream, read_tasks
from tests.reliability.conftest import record_figure
from worker import runtime
from worker.execute import Watchdog, execute_task
from worker.job import SafeJob

pytestmark = pytest.mark.reliability

EXAMPLES = {
    "reader_text": 600,
    "reader_jsonl": 600,
    "reader_bytes": 600,
    "decode_chunk": 400,
    "decode_results": 400,
    "execute_task": 400,
    "run_chunk": 800,
}
"""Hypothesis examples per target. Each example is a list of inputs (lines, payloads, tasks), which
keeps Hypothesis's own cost per input low; the inputs are what is counted."""

generated: Counter[str] = Counter()
"""Inputs actually tried, per target."""


def profile(target: str) -> Any:
    """The same deterministic settings for every target, with its own number of inputs."""
    return settings(
        max_examples=EXAMPLES[target],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module", autouse=True)
def count_inputs() -> Iterator[None]:
    """Record how many inputs the module generated, and insist on the advertised minimum."""
    yield
    total = sum(generated.values())
    record_figure("fuzz_inputs", total=total, **generated)
    assert total >= 10_000, dict(generated)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)
task_names = st.sampled_from([*default_catalogue.names(), "nope", "os.system", "", "1bad", "a.b"]) | st.text(
    max_size=12
)


def strict_json(value: Any) -> str:
    """What the wire requires: JSON without NaN or Infinity."""
    return json.dumps(value, allow_nan=False)


def _check_items(items: list[Any], lines: list[str]) -> None:
    expected = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    assert len(items) == len(expected)  # exactly one task or one error per line
    for index, item in enumerate(items):
        assert item.index == index
        if isinstance(item, BadInput):
            assert item.error_type in ("MalformedInput", "LimitExceeded") and item.message
            strict_json(item.to_result().to_record())
        else:
            assert isinstance(item, TaskSpec) and TASK_NAME_PATTERN.match(item.task)
            strict_json([item.args, item.kwargs])  # whatever the reader accepts can travel


@profile("reader_text")
@given(
    st.lists(
        st.text(max_size=40)
        | st.builds(
            " ".join,
            st.lists(
                st.text(max_size=8)
                | st.sampled_from(
                    ["add", "echo", '"', "'", "NaN", "-Infinity", "1e999", "#", "1.5", "true", "null", '"a b"', "\\"]
                ),
                max_size=5,
            ),
        ),
        max_size=8,
    )
)
def test_reader_text(lines: list[str]) -> None:
    generated["reader_text"] += len(lines)
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    _check_items(list(read_tasks(lines, "text", 200)), lines)


@profile("reader_jsonl")
@given(
    st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(["task", "args", "kwargs", "id", "x"]), json_values, max_size=4).map(
                json.dumps
            ),
            st.fixed_dictionaries({"task": task_names, "args": st.lists(json_values, max_size=3)}).map(json.dumps),
            json_values.map(json.dumps),
            st.text(max_size=30),
        ),
        max_size=6,
    )
)
def test_reader_jsonl(lines: list[str]) -> None:
    generated["reader_jsonl"] += len(lines)
    lines = [ln.replace("\n", " ").replace("\r", " ") for ln in lines]
    _check_items(list(read_tasks(lines, "jsonl", 200)), lines)


BYTES_LIMIT = 200
"""The argument limit for the byte-level reader fuzz: long lines are over it or near it."""

long_pieces = st.builds(
    lambda piece, count: piece * count,
    st.sampled_from(
        [b"x", b'"', b"'", b" 1", b" w", b"[", b"]", b"{", b'{"a":', b"\\", b"\xc3\xa9", b"\xff", b"\x00", b"#"]
    ),
    st.integers(0, 3 * (BYTES_LIMIT + LINE_ALLOWANCE_BYTES)),
)
nested = st.builds(
    lambda depth, text: (
        (b'{"task": "echo", "args": [' if text else b"echo ") + b"[" * depth + b"]" * depth + (b"]}" if text else b"")
    ),
    st.integers(0, 3 * MAX_NESTING_DEPTH) | st.integers(0, 20_000),
    st.booleans(),
)
byte_lines = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            b"".join,
            st.lists(
                st.sampled_from(
                    [
                        b"add",
                        b"echo",
                        b" ",
                        b"1",
                        b'"',
                        b"'",
                        b"\xff",
                        b"\xc3",
                        b"\x00",
                        b"#",
                        b"{",
                        b'"task"',
                        b":",
                        b"\t",
                        b"\xe2\x80\xa8",
                    ]
                ),
                max_size=8,
            ),
        ),
        st.builds(
            bytes.__add__,
            st.sampled_from([b"echo ", b'echo "', b"# ", b"   ", b'{"task": "echo", "args": ["']),
            long_pieces,
        ),
        nested,
        st.sampled_from([b'{"task": "add", "args": [1, 2]}', b"add 1 2"]),
    ),
    max_size=8,
)


def _expected_lines(data: bytes, max_line: int) -> int:
    """Lines that are neither blank nor comments: lines end at LF, CRLF or CR; over-long lines are judged
    by their first byte that is not ASCII whitespace, others by their text (bad bytes replaced)."""
    count = 0
    for line in re.split(rb"\r\n|\r|\n", data):
        if len(line) > max_line:
            first = line.lstrip()[:1]
            count += first not in (b"", b"#")
        else:
            text = line.decode("utf-8", "replace").strip()
            count += bool(text) and text[0] != "#"
    return count


def _depth(value: Any) -> int:
    if isinstance(value, (list, dict)):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(item) for item in items), default=0)
    return 0


@profile("reader_bytes")
@given(
    byte_lines,
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.booleans(),
    st.integers(1, 64),
    st.sampled_from(["text", "jsonl", "auto"]),
)
def test_reader_bytes(lines: list[bytes], end: bytes, final_end: bool, block_size: int, fmt: str) -> None:
    """Raw bytes of any length, nesting and encoding, cut into reads of any size: one item per line."""
    generated["reader_bytes"] += len(lines)
    data = end.join(lines) + (end if final_end else b"")
    items = list(read_stream(io.BytesIO(data), fmt, BYTES_LIMIT, block_size))  # type: ignore[arg-type]
    for item in items:  # what the inputs held (--hypothesis-show-statistics)
        if isinstance(item, BadInput):
            event(f"{item.error_type}: {re.sub(r'[0-9]+', 'N', item.message)[:40]}")
    assert len(items) == _expected_lines(data, BYTES_LIMIT + LINE_ALLOWANCE_BYTES)
    assert [item.index for item in items] == list(range(len(items)))
    line_numbers = [item.line_no for item in items if isinstance(item, BadInput)]
    assert line_numbers == sorted(set(line_numbers))
    for item in items:
        if isinstance(item, BadInput):
            assert item.error_type in ("MalformedInput", "LimitExceeded") and 0 < len(item.message) < 300
            strict_json(item.to_result().to_record())
        else:
            assert TASK_NAME_PATTERN.match(item.task)
            assert len(encode_value([item.args, item.kwargs]).encode("utf-8", "surrogatepass")) <= BYTES_LIMIT
            assert _depth([item.args, item.kwargs]) < MAX_NESTING_DEPTH


raw_tasks = st.lists(
    st.one_of(
        st.tuples(
            st.integers(-2, 10**6),
            st.none() | st.text(max_size=5),
            task_names,
            st.lists(json_values, max_size=3),
            st.dictionaries(st.text(max_size=5), json_values, max_size=2),
        ).map(list),
        json_values,
    ),
    max_size=5,
)
chunk_payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 1, 2, "1", None]),
            "b": st.text(max_size=8) | scalars,
            "c": st.integers(-1, 5) | scalars,
            "x": st.integers(-1, 10**6) | scalars,
            "t": raw_tasks,
        }
    ),
)


@profile("decode_chunk")
@given(st.lists(chunk_payloads, min_size=1, max_size=12))
def test_decode_chunk(payloads: list[Any]) -> None:
    generated["decode_chunk"] += len(payloads)
    for payload in payloads:
        try:
            chunk = decode_chunk(payload)
        except PayloadError as exc:
            assert str(exc)
            continue
        assert all(isinstance(t, TaskSpec) and isinstance(t.index, int) and t.index >= 0 for t in chunk.tasks)


rows = st.lists(
    st.one_of(
        st.tuples(
            st.integers(-1, 10**6),
            st.none() | st.text(max_size=5),
            st.text(max_size=8),
            st.lists(scalars, max_size=2),
            st.dictionaries(st.text(max_size=3), scalars, max_size=1),
            st.sampled_from([0, 1, 2, None, True]),
            json_values,
            st.floats() | scalars,
        ).map(list),
        json_values,
    ),
    max_size=4,
)
result_fields = st.fixed_dictionaries(
    {
        "v": st.sampled_from(["1", "1", "2", ""]),
        "w": st.text(max_size=8),
        "c": st.sampled_from(["0", "3", "-1", "x", ""]),
        "r": st.one_of(rows.map(json.dumps), st.text(max_size=30)),
    }
).flatmap(
    lambda f: st.sampled_from(
        [
            f,
            {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in f.items()},
            {k: v for k, v in f.items() if k != "r"},
        ]
    )
)


@profile("decode_results")
@given(st.lists(result_fields, min_size=1, max_size=12))
def test_decode_results(entries: list[Any]) -> None:
    generated["decode_results"] += len(entries)
    for fields in entries:
        try:
            _chunk, results = decode_results(fields)
        except PayloadError as exc:
            assert str(exc)
            continue
        assert all(isinstance(r, TaskResult) and isinstance(r.index, int) for r in results)


FUZZ_SETTINGS = Settings.from_env({}, task_timeout=0.2, max_result_bytes=10_000)
fuzz_catalogue = Catalogue()
for definition in default_catalogue:
    if definition.name != "sleep":  # sleeping is not a crash; the runaway-task test covers it
        fuzz_catalogue.register(definition.func, name=definition.name)

specs = st.builds(
    TaskSpec,
    st.integers(0, 10**6),
    task_names,
    st.lists(json_values, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "n", "text", "rounds", "x"]), json_values, max_size=2),
    st.none() | st.text(max_size=5),
)


def _publishable(result: TaskResult, spec: TaskSpec) -> None:
    assert result.index == spec.index
    if not result.ok:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", result.error_type or "") and result.error_message
    entry = encode_results("fuzz", 0, [result])  # must never fail: a worker publishes whatever this returns
    _chunk, (back,) = decode_results(entry)
    assert back.index == spec.index and back.ok == result.ok


@profile("execute_task")
@given(st.lists(specs, min_size=1, max_size=12))
def test_execute_task(batch: list[TaskSpec]) -> None:
    generated["execute_task"] += len(batch)
    with Watchdog(FUZZ_SETTINGS.task_timeout) as watchdog:
        for spec in batch:
            result = execute_task(spec, fuzz_catalogue, FUZZ_SETTINGS, "fuzz", watchdog)
            _publishable(result, spec)
            if result.ok and isinstance(result.value, float):
                assert math.isfinite(result.value)


@pytest.fixture(scope="module")
def job_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    runtime.configure(runtime.Runtime(FUZZ_SETTINGS, fuzz_catalogue, "fuzz"))
    yield client
    runtime.reset()
    client.close()


@profile("run_chunk")
@given(
    payload=st.one_of(
        chunk_payloads,
        st.lists(specs, max_size=4).map(
            lambda tasks: encode_chunk(
                "fz", 0, 60, [TaskSpec(i, t.task, t.args, t.kwargs, t.id) for i, t in enumerate(tasks)]
            )
        ),
    )
)
def test_job_function(job_redis: fakeredis.FakeRedis, payload: Any) -> None:
    """The worker's job function, run by RQ's own Job.perform through SafeJob, as a worker runs it."""
    generated["run_chunk"] += 1  # one payload, holding up to 4 tasks
    job_redis.flushall()
    job = SafeJob.create("worker.chunk.run_chunk", args=(payload,), connection=job_redis, serializer=JSONSerializer)
    try:
        ran = job.perform()
    except PayloadError as exc:
        assert str(exc)
        return
    chunk = decode_chunk(payload)
    published = [
        r for _id, fields in job_redis.xrange(f"dw:batch:{chunk.batch_id}:results") for r in decode_results(fields)[1]
    ]
    assert ran == len(chunk.tasks)
    assert sorted(r.index for r in published) == sorted(t.index for t in chunk.tasks)  # one result per task
