"""A Sentinel-watched Redis on this host for failover tests: one master, one replica, three sentinels,
each a real redis-server process on a free loopback port, all stopped after the test."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from dispatcher.local import find_redis_server, free_port, spawn, stop
from tests.reliability.conftest import RestartableRedis
from tests.support import wait_until

MASTER_NAME = "dwmaster"

DOWN_AFTER_MS = 1000
"""Sentinel's down-after-milliseconds: kept short so a test's failover is quick."""

FAILOVER_TIMEOUT_MS = 3000


@dataclass
class SentinelCluster:
    """A master, a replica and three sentinels; `url` is the redis+sentinel:// URL the processes use."""

    binary: str = field(default_factory=find_redis_server)
    master: RestartableRedis | None = None
    replica: RestartableRedis | None = None
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelCluster:
        self.master = RestartableRedis(binary=self.binary).start()
        self.replica = RestartableRedis(
            binary=self.binary, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        ).start()
        replica = redis.Redis(port=self.replica.port)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 30, "the replica link")
        replica.close()
        for _ in range(3):
            self._start_sentinel()
        wait_until(self._sentinels_agree, 60, "three sentinels that see the replica and each other")
        return self

    def _start_sentinel(self) -> None:
        assert self.master is not None
        port = free_port()
        folder = Path(tempfile.mkdtemp(prefix="redis-dispatch-sentinel-"))
        self.dirs.append(folder)
        config = folder / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nprotected-mode no\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        with (folder / "sentinel.log").open("ab") as log:
            self.sentinels.append(spawn([self.binary, str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT))
        self.sentinel_ports.append(port)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=2) as sentinel:
                    state = sentinel.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if int(state.get("num-slaves", 0)) < 1 or int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def kill_master(self) -> float:
        """SIGKILL the master; returns the monotonic time of the kill."""
        assert self.master is not None
        self.master.crash()
        return time.monotonic()

    def promoted(self) -> bool:
        """True once the replica is a master and every sentinel names it: the old master's host may
        come back only then (it restarts empty), or a sentinel still on the old configuration could
        make the new master a replica of it, which would wipe the new master's data."""
        assert self.replica is not None
        try:
            with redis.Redis(port=self.replica.port, socket_timeout=2) as client:
                if client.info("replication").get("role") != "master":
                    return False
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=2) as sentinel:
                    address = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
                    if address is None or int(address[1]) != self.replica.port:
                        return False
        except redis.RedisError:
            return False
        return True

    def stop(self) -> None:
        for process in self.sentinels:
            stop(process)
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()
        for folder in self.dirs:
            shutil.rmtree(folder, ignore_errors=True)
