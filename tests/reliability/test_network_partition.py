"""Guarantee 5: a worker host cut off the network for 30 s mid-chunk, then healed. Nothing is lost,
nothing is duplicated, and the cut-off worker rejoins by itself.

The "host" is a network namespace joined to this one by a veth pair; Redis listens on the host end.
Cutting the link (ip link set down) is a pulled cable: packets vanish, nothing is reset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.reliability.conftest import (
    FAST_RECOVERY,
    Procs,
    RestartableRedis,
    assert_exactly_once,
    current_job,
    live_worker_names,
    parse_json_results,
    write_tasks,
)
from tests.support import skip_or_fail, wait_until

pytestmark = pytest.mark.reliability

CUT_SECONDS = 30.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str, str]]:
    """A network namespace with a veth link to this one: (namespace, host-side link, host IP, namespace IP)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_or_fail("network namespaces need root and the ip command (iproute2)")
    tag = os.getpid() % 100_000
    name, host_link, ns_link = f"dwrel{tag}", f"dwh{tag}", f"dwn{tag}"
    subnet = f"10.231.{tag % 250}"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        skip_or_fail(f"cannot create a network namespace: {exc.stderr.decode(errors='replace')}")
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        ip("link", "set", ns_link, "netns", name)
        ip("addr", "add", f"{subnet}.1/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/30", "dev", ns_link)
        ip("netns", "exec", name, "ip", "link", "set", ns_link, "up")
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, host_link, f"{subnet}.1", f"{subnet}.2"
    finally:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_worker_cut_off_for_30_seconds(
    namespace: tuple[str, str, str, str],
    private_redis: Callable[..., RestartableRedis],
    procs_factory: Callable[..., Procs],
    tmp_path: Path,
) -> None:
    netns, host_link, host_ip, _ns_ip = namespace
    server = private_redis("--bind", "127.0.0.1", host_ip)
    client = redis.Redis.from_url(server.url)
    procs = procs_factory(server.url, FAST_RECOVERY)
    remote_url = f"redis://{host_ip}:{server.port}/0"
    remote = procs.worker("--name", "remote", env={"REDIS_URL": remote_url}, prefix=["ip", "netns", "exec", netns])
    wait_until(lambda: "remote" in live_worker_names(client), 30, "the worker in the namespace")
    local = procs.worker("--name", "local")
    wait_until(lambda: "local" in live_worker_names(client), 30, "the local worker")
    total = 40
    batch = write_tasks(tmp_path / "batch.txt", [f"rt.nap 0.3 {i}" for i in range(total)])
    dispatcher = procs.dispatcher("submit", str(batch), "--json", "--chunk-size", "4")
    wait_until(lambda: current_job(client, "remote"), 30, "the remote worker to take a chunk")

    ip("link", "set", host_link, "down")
    cut = time.monotonic()
    try:
        # The batch ends while the worker is still cut off: it did not need that worker. (The wait's
        # limit only guards against a hang.)
        assert dispatcher.wait(CUT_SECONDS + 60) == 0, procs.log(dispatcher)
        time.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut)))  # the cut lasts CUT_SECONDS at least
    finally:
        ip("link", "set", host_link, "up")

    records = parse_json_results(procs.output(dispatcher))
    by_index = assert_exactly_once(records, total)
    assert all(r["ok"] and r["result"] == i for i, r in by_index.items())

    # The cut-off worker rejoins: with the local worker gone, a new batch can only be served by it.
    procs.processes.remove(local)
    local.terminate()
    local.wait(30)
    after = procs.run(
        "submit", "-", "--json", "--no-check", "--timeout", "180", input_text="add 1 2\nadd 3 4\n", timeout=240
    )
    assert after.returncode == 0, after.stderr + procs.log(remote)[-3000:]
    assert {r["worker"] for r in parse_json_results(after.stdout)} == {"remote"}
    assert remote.poll() is None
    client.close()
