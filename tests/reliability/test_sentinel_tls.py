"""rediss+sentinel://: a master and a replica that speak only TLS, three Sentinels that speak only TLS,
with passwords that differ between the Sentinels and the data servers; a worker and a dispatcher
given only the URL run a batch, then run another after the master is killed and the replica promoted."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from dispatcher.local import free_port, spawn, stop
from tests.reliability.conftest import FAST_RECOVERY, Procs
from tests.reliability.test_auth_tls import batch_roundtrip, make_certificate, tls_server_binary
from tests.support import wait_until

pytestmark = pytest.mark.reliability

DATA_PASSWORD = "data-s3cret"
SENTINEL_PASSWORD = "sentinel-s3cret"


class TlsCluster:
    """Master, replica and three Sentinels, TLS only, on free loopback ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.binary = tls_server_binary()
        self.cert = make_certificate(tmp, "cluster")
        key = str(self.cert.with_suffix(".key"))
        self.tls = [
            "--tls-cert-file",
            str(self.cert),
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            str(self.cert),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def client(self, name: str, password: str) -> redis.Redis:
        return redis.Redis(
            port=self.ports[name],
            password=password,
            ssl=True,
            ssl_ca_certs=str(self.cert),
            socket_timeout=2,
            socket_connect_timeout=2,
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.tmp / f"{name}.log").open("ab") as log:
            self.processes[name] = spawn(argv, stdout=log, stderr=subprocess.STDOUT)

    def start_server(self, name: str, *extra: str) -> None:
        port = self.ports.setdefault(name, free_port())
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        argv = [self.binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(folder)]
        argv += ["--requirepass", DATA_PASSWORD, "--masterauth", DATA_PASSWORD, *self.tls, *extra]
        self._spawn(name, argv)
        wait_until(lambda: self._answers(name, DATA_PASSWORD), 15, f"{name} to answer over TLS")

    def start_sentinel(self, name: str) -> None:
        port = self.ports[name] = free_port()
        conf = self.tmp / f"{name}.conf"
        conf.write_text(
            f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {self.tmp}\n"
            + "".join(f"{self.tls[i][2:]} {self.tls[i + 1]}\n" for i in range(0, len(self.tls), 2))
            + f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor dwmaster 127.0.0.1 {self.ports['master']} 2\n"
            f"sentinel auth-pass dwmaster {DATA_PASSWORD}\n"
            "sentinel down-after-milliseconds dwmaster 1000\nsentinel failover-timeout dwmaster 3000\n"
        )
        self._spawn(name, [self.binary, str(conf), "--sentinel"])

    def _answers(self, name: str, password: str) -> bool:
        try:
            with self.client(name, password) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def sentinels_ready(self) -> bool:
        for name in ("s1", "s2", "s3"):
            try:
                with self.client(name, SENTINEL_PASSWORD) as sentinel:
                    state = sentinel.sentinel_master("dwmaster")
            except redis.RedisError:
                return False
            if int(state.get("num-slaves", 0)) < 1 or int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def sentinels_name(self, server: str) -> bool:
        """True once every Sentinel names `server` as the master (a new client can then find it)."""
        for name in ("s1", "s2", "s3"):
            try:
                with self.client(name, SENTINEL_PASSWORD) as sentinel:
                    state = sentinel.sentinel_master("dwmaster")
            except redis.RedisError:
                return False
            if int(state.get("port", 0)) != self.ports[server] or state.get("is_sdown") or state.get("is_odown"):
                return False
        return True

    def role(self, name: str) -> str:
        try:
            with self.client(name, DATA_PASSWORD) as client:
                return str(client.info("replication").get("role"))
        except redis.RedisError:
            return ""

    def stop(self) -> None:
        for process in self.processes.values():
            stop(process)


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[TlsCluster]:
    cluster = TlsCluster(tmp_path)
    try:
        cluster.start_server("master")
        cluster.start_server("replica", "--replicaof", "127.0.0.1", str(cluster.ports["master"]))
        wait_until(lambda: cluster.role("replica") == "slave", 15, "the replica")
        for name in ("s1", "s2", "s3"):
            cluster.start_sentinel(name)
        wait_until(cluster.sentinels_ready, 60, "three TLS Sentinels that see the replica and each other")
        yield cluster
    finally:
        cluster.stop()


def test_rediss_sentinel_url_with_two_passwords_through_a_failover(
    tls_cluster: TlsCluster, procs_factory: Callable[..., Procs]
) -> None:
    hosts = ",".join(f"127.0.0.1:{tls_cluster.ports[name]}" for name in ("s1", "s2", "s3"))
    url = f"rediss+sentinel://:{DATA_PASSWORD}@{hosts}/dwmaster/0?ssl_ca_certs={tls_cluster.cert}"
    procs = procs_factory(url, {**FAST_RECOVERY, "DW_SENTINEL_PASSWORD": SENTINEL_PASSWORD})
    batch_roundtrip(procs, url)

    no_sentinel_password = procs.run("status", env={"DW_SENTINEL_PASSWORD": ""})
    assert no_sentinel_password.returncode == 3, no_sentinel_password.stderr
    assert SENTINEL_PASSWORD not in no_sentinel_password.stderr + no_sentinel_password.stdout

    tls_cluster.processes["master"].kill()
    wait_until(lambda: tls_cluster.role("replica") == "master", 60, "the replica's promotion")
    wait_until(lambda: tls_cluster.sentinels_name("replica"), 60, "the Sentinels to name the new master")
    done = procs.run("submit", "-", "--json", "--no-check", "--timeout", "60", input_text="add 5 6\n")
    assert done.returncode == 0, done.stderr
    assert '"result":11' in done.stdout.replace(" ", ""), done.stdout
