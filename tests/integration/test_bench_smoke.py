"""The benchmark harness runs end to end on this system and writes its JSON (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_bench_quick_runs_w1_and_w2_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--systems", "ours", "--workloads", "W1,W2", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| W1 throughput, tasks/s |" in done.stdout
    results = json.loads(out.read_text())["results"]["ours"]
    assert results["W1"]["median"]["tasks_per_s"] > 0  # every result was checked, or the run raised
    assert results["W2"]["median"]["p50_ms"] <= results["W2"]["median"]["p99_ms"]


@pytest.mark.parametrize("mode", ["async", "threads"])
def test_bench_w3_says_which_slots_it_ran_on(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--systems", "ours", "--workloads", "W3", "--w3-mode", mode,
            "--json", str(out)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    label = {"async": "async slots", "threads": "threads"}[mode]
    assert f"| W3 200 x sleep(0.05), 20 slots (ours: {label}): efficiency |" in done.stdout
    document = json.loads(out.read_text())
    assert document["w3_mode"] == mode and document["results"]["ours"]["W3"]["median"]["efficiency"] > 0
