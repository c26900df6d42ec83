"""`docker compose -f docker-compose.ha.yml up`, then `docker compose kill redis-master`, run for real as
processes in network namespaces (tests/deploy/netns.py): the Sentinels fail over to the replica, and the
workers and the dispatcher, which know only the Sentinels, carry on through the new master."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.compose import HA_COMPOSE_FILE, resolved_model
from tests.deploy.netns import ComposeNet, Replica, remove_stale_namespaces
from tests.deploy.test_compose_netns import assert_healthy, example_tasks, expected_value, logs, redis_bin_dir
from tests.support import wait_until

pytestmark = [pytest.mark.deploy, pytest.mark.netns, pytest.mark.timeout(600)]

PASSWORD = "ha-data-secret"
SENTINEL_PASSWORD = "ha-sentinel-secret"
WORKERS = 2


@pytest.fixture
def compose(tmp_path: Path) -> Iterator[ComposeNet]:
    bin_dir = redis_bin_dir()
    env = {
        "REDIS_PASSWORD": PASSWORD,
        "SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "SENTINEL_DOWN_AFTER_MS": "1000",
        "DW_MIN_REPLICAS": "1",
    }
    model = resolved_model(env, profiles=(), file=HA_COMPOSE_FILE)
    remove_stale_namespaces()
    net = ComposeNet(model, tmp_path, bin_dir)
    try:
        net.create_network()
        yield net
    finally:
        net.close()


def sentinel_view(net: ComposeNet, sentinel: Replica) -> dict[str, str]:
    """`SENTINEL MASTER dwmaster` as one Sentinel answers it."""
    answer = net.exec(
        sentinel,
        ["redis-cli", "-p", "26379", "--no-auth-warning", "-a", SENTINEL_PASSWORD, "sentinel", "master", "dwmaster"],
        timeout=30,
    )
    words = answer.stdout.split()
    return dict(zip(words[::2], words[1::2], strict=False))


def role(net: ComposeNet, server: Replica) -> str:
    answer = net.exec(server, ["redis-cli", "--no-auth-warning", "-a", PASSWORD, "role"], timeout=30)
    return answer.stdout.split()[0] if answer.stdout.split() else ""


def run_example(net: ComposeNet, dispatcher: Replica) -> None:
    """`docker compose run --rm dispatcher submit examples/tasks.txt --json`: every task right, once."""
    done = net.run(dispatcher, ["submit", "examples/tasks.txt", "--json", "--timeout", "180"])
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{logs(net)}"
    records = [json.loads(line) for line in done.stdout.splitlines()]
    tasks = example_tasks(Path(__file__).resolve().parents[2] / "examples" / "tasks.txt")
    assert sorted(r["index"] for r in records) == list(range(len(tasks)))
    for record in records:
        task, args = tasks[record["index"]]
        assert record["ok"] and record["result"] == pytest.approx(expected_value(task, args)), record


def test_ha_compose_up_then_the_master_dies_and_work_goes_on(compose: ComposeNet) -> None:
    master = compose.add_replica("redis-master", 1)
    replica = compose.add_replica("redis-replica", 1)
    sentinels = [compose.add_replica(f"sentinel-{i}", 1) for i in (1, 2, 3)]
    workers = [compose.add_replica("worker", i) for i in range(1, WORKERS + 1)]
    dispatcher = compose.add_replica("dispatcher", 1)

    # `up`, in depends_on order.
    for server in (master, replica, *sentinels):
        compose.start(server)
        assert_healthy(compose, server)

    def sentinels_ready() -> bool:
        views = [sentinel_view(compose, s) for s in sentinels]
        return all(v.get("num-slaves") == "1" and v.get("num-other-sentinels") == "2" for v in views)

    wait_until(sentinels_ready, 120, "three Sentinels that know the replica and each other", interval=0.2)
    for worker in workers:
        compose.start(worker)
    for worker in workers:
        assert_healthy(compose, worker)
    shown = compose.run(dispatcher)  # the service's own command: the example batch
    assert shown.returncode == 0, f"{shown.stdout}{shown.stderr}\n{logs(compose)}"

    # `docker compose kill redis-master`: the Sentinels promote the replica; nobody is told its address.
    assert master.process is not None
    master.process.kill()
    master.process.wait()

    def promoted() -> bool:
        """The replica is master and every Sentinel names it. The old master comes back (empty) only
        then: a Sentinel still on the old configuration could otherwise keep it a master, or make
        the new master its replica (docs/reliability.md, guarantee 14)."""
        if role(compose, replica) != "master":
            return False
        return all(sentinel_view(compose, s).get("ip") in (replica.address, replica.hostname) for s in sentinels)

    wait_until(promoted, 120, "the replica's promotion, known to every Sentinel", interval=0.2)
    compose.start(master)  # `restart: unless-stopped` brings the old master back, as a replica
    wait_until(lambda: role(compose, master) == "slave", 120, "the old master to rejoin as a replica", interval=0.2)
    run_example(compose, dispatcher)
    for worker in workers:
        assert worker.process is not None and worker.process.poll() is None, logs(compose)
        assert_healthy(compose, worker)
