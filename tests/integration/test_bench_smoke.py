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
    argv = [sys.executable, "-m", "bench", "--quick", "--systems", "ours", "--workloads", "W3"]
    argv += ["--w3-mode", mode, "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    label = {"async": "async slots", "threads": "threads"}[mode]
    assert f"| W3 200 x sleep(0.05), 20 slots (ours: {label}): efficiency |" in done.stdout
    document = json.loads(out.read_text())
    assert document["w3_mode"] == mode and document["results"]["ours"]["W3"]["median"]["efficiency"] > 0


def test_bench_quick_runs_the_cli_workloads_and_checks_every_line(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--systems", "ours,ppe", "--workloads", "C1,C2,C3"]
    argv += ["--cli-tasks", "20000", "--json", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| C1 task file, `submit --json > file`, tasks/s (start included) |" in done.stdout
    results = json.loads(out.read_text())["results"]
    for system, workload in (("ours", "C1"), ("ours", "C2"), ("ppe", "C1")):
        assert results[system][workload]["median"]["tasks_per_s"] > 0  # every line was checked, or it raised
    assert results["ours"]["C3"]["median"]["worker_ready_ms"] > 0


def test_the_cli_checks_refuse_a_missing_or_wrong_line(tmp_path: Path) -> None:
    """What C1 and C2 count as checked: every task once, with the right value."""
    from bench.cli import check_human, check_json

    good = tmp_path / "good.jsonl"
    good.write_text("".join(f'{{"index":{i},"args":[{i},{i}],"ok":true,"result":{2 * i}}}\n' for i in range(3)))
    check_json(good, 3)
    with pytest.raises(RuntimeError, match="missing"):
        check_json(good, 4)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"index":0,"args":[0,0],"ok":true,"result":0}\n{"index":1,"args":[1,1],"ok":true,"result":3}\n')
    with pytest.raises(RuntimeError, match="wrong"):
        check_json(wrong, 2)
    human = tmp_path / "human.txt"
    human.write_text("Task 1: add 0 0 = 0 (by w, 0.01 ms)\nTask 2: add 1 1 = 2 (by w, 0.01 ms)\n")
    check_human(human, 2)
    human.write_text("Task 1: add 0 0 = 0 (by w, 0.01 ms)\nTask 1: add 0 0 = 0 (by w, 0.01 ms)\n")
    with pytest.raises(RuntimeError, match="twice"):
        check_human(human, 2)
