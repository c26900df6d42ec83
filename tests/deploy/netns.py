"""Run docker-compose.yml's services as local processes, one network namespace per replica.

A stand-in for a container engine, close enough to test what the compose file promises: every replica
gets its own network namespace (veth to a bridge that lives in a namespace of its own, no default
route, so nothing can leave the machine), its own hostname (UTS namespace) and an /etc/hosts in which
each service name (`redis`, `sentinel-1`, ...) resolves as Compose's DNS makes it resolve. Commands,
environments and health checks come from the resolved Compose model; image paths are mapped to this
checkout and its virtualenv.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.local import spawn
from tests.deploy.compose import ROOT, argv_of, duration_seconds, image_cmd, image_env, unescape

SUBNET = "10.213.0"
"""The /24 the test hosts live on; it exists only inside the namespaces this module creates."""
NETNS_PREFIX = "dwcompose"
"""Prefix of every namespace created here, followed by the creating process id."""
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the official images before their own ENV lines."""
IMAGE_VENV = "/opt/venv"
"""Where the Dockerfile puts the virtualenv; this test's own virtualenv stands in for it."""


@dataclass
class Replica:
    """One container of a service: a namespace, a hostname, an address and (once started) a process."""

    service: str
    index: int
    netns: str
    hostname: str
    address: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Stopped:
    """How a replica stopped: its exit code, whether it needed SIGKILL, and how long it took."""

    returncode: int
    killed: bool
    seconds: float


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def remove_stale_namespaces() -> None:
    """Delete namespaces left by an earlier run of this module whose process is gone."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        owner = name.removeprefix(NETNS_PREFIX).split("-")[0]
        if name.startswith(NETNS_PREFIX) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _delete_namespace(name)


def _delete_namespace(name: str) -> None:
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


class ComposeNet:
    """The services of one resolved Compose model, run as processes on a private bridge."""

    def __init__(self, model: dict[str, Any], workdir: Path, redis_bin_dir: Path) -> None:
        self.model = model
        self.project = model["name"]
        self.workdir = workdir
        self.redis_bin_dir = redis_bin_dir
        self.tag = f"{NETNS_PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}-bridge"
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.namespaces: list[str] = []
        self._next_address = 2
        self._made_etc_netns = not Path("/etc/netns").exists()

    # --- network ---------------------------------------------------------------------------------

    def create_network(self) -> None:
        """The bridge, in a namespace of its own so that the host's interfaces never see it."""
        _ip("netns", "add", self.bridge)
        self.namespaces.append(self.bridge)
        _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge, "link", "set", "br0", "up")

    def add_replica(self, service: str, index: int) -> Replica:
        """A namespace for one replica: loopback up, eth0 on the bridge, /etc/hosts like Compose's DNS."""
        octet = self._next_address
        self._next_address += 1
        netns = f"{self.tag}-{service}-{index}"
        _ip("netns", "add", netns)
        self.namespaces.append(netns)
        _ip("link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", f"veth{octet}", "netns", self.bridge)
        _ip("-n", self.bridge, "link", "set", f"veth{octet}", "master", "br0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        routes = subprocess.run(
            ["ip", "-n", netns, "route", "show", "default"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        assert not routes.strip(), f"{netns} has a default route: {routes}"
        replica = Replica(
            service,
            index,
            netns,
            f"{self.project}-{service}-{index}",
            f"{SUBNET}.{octet}",
            self.workdir / f"{service}-{index}.log",
        )
        self.replicas[(service, index)] = replica
        for each in self.replicas.values():  # every replica learns the new service name
            self._write_hosts(each)
        return replica

    def _write_hosts(self, replica: Replica) -> None:
        # `ip netns exec` bind-mounts /etc/netns/<name>/hosts over /etc/hosts for what it runs; the file
        # is rewritten in place, so a running process sees names added later too.
        lines = ["127.0.0.1 localhost", "::1 localhost", f"{replica.address} {replica.hostname}"]
        lines += [f"{r.address} {r.service}" for r in self.replicas.values() if r.index == 1]
        folder = Path("/etc/netns") / replica.netns
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        """Kill every process started here and delete every namespace, veth and hosts file."""
        for replica in self.replicas.values():
            if replica.process is not None and replica.process.poll() is None:
                replica.process.kill()
                replica.process.wait(30)
        for netns in reversed(self.namespaces):
            _delete_namespace(netns)
        self.namespaces.clear()
        if self._made_etc_netns:
            with contextlib.suppress(OSError):
                Path("/etc/netns").rmdir()  # only if empty: another user's namespaces may be there now

    # --- services --------------------------------------------------------------------------------

    def service(self, name: str) -> dict[str, Any]:
        """The resolved model of one service."""
        found: dict[str, Any] = self.model["services"][name]
        return found

    def environment(self, replica: Replica) -> dict[str, str]:
        """What a process of this replica sees: the image's ENV, then the service's `environment`."""
        service = self.service(replica.service)
        env = {"PATH": BASE_PATH, "HOSTNAME": replica.hostname, "LANG": "C.UTF-8"}
        if service.get("build"):
            for key, value in image_env().items():
                env[key] = self.host_path(value.replace("$PATH", env["PATH"]))
        else:
            env["PATH"] = f"{self.redis_bin_dir}:{env['PATH']}"  # the image's redis-server and redis-cli
        for key, value in (service.get("environment") or {}).items():
            env[key] = unescape(value or "")
        return env

    def host_path(self, value: str) -> str:
        """An image path mapped to this machine: the virtualenv, the volumes."""
        return value.replace(IMAGE_VENV, sys.prefix)

    def argv(self, replica: Replica, args: list[str] | None = None) -> list[str]:
        """The replica's argv: the service's entrypoint and command (or `args`, as `compose run` does)."""
        service = self.service(replica.service)
        if args is not None:
            return [*(service.get("entrypoint") or []), *args]
        argv = argv_of(service, image_cmd() if service.get("build") else [])
        return [self._volume_path(replica.service, a) for a in argv]

    def _volume_path(self, service: str, arg: str) -> str:
        for volume in self.service(service).get("volumes") or []:
            if arg == volume["target"]:
                folder = self.workdir / f"volume-{volume['source']}"
                folder.mkdir(exist_ok=True)
                return str(folder)
        return arg

    def cwd(self, replica: Replica) -> Path:
        """The container's working directory: the image's WORKDIR is this checkout (it holds examples/)."""
        return ROOT if self.service(replica.service).get("build") else self.workdir

    def _enter(self, replica: Replica, argv: list[str]) -> list[str]:
        """argv run inside the replica: its network namespace, its own hostname."""
        set_hostname = 'hostname "$0" && exec "$@"'
        enter = ["ip", "netns", "exec", replica.netns, "unshare", "--uts", "--"]
        return [*enter, "sh", "-c", set_hostname, replica.hostname, *argv]

    def start(self, replica: Replica, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
        """Start the replica's main process (`docker compose up` for one container)."""
        replica.env = self.environment(replica)
        with replica.log.open("ab") as log:
            replica.process = spawn(
                self._enter(replica, argv or self.argv(replica)),
                env=replica.env,
                cwd=self.cwd(replica),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return replica.process

    def run(
        self, replica: Replica, args: list[str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-off process in the replica's namespace to completion (`docker compose run --rm`)."""
        env = self.environment(replica)
        return subprocess.run(
            self._enter(replica, self.argv(replica, args)),
            env=env,
            cwd=self.cwd(replica),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def exec(self, replica: Replica, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run argv inside the running replica: its network, mounts (hosts file) and hostname (`docker exec`)."""
        assert replica.process is not None and replica.process.poll() is None, f"{replica.hostname} is not running"
        enter = ["nsenter", "-t", str(replica.process.pid), "-n", "-m", "-u", "--"]
        return subprocess.run(
            [*enter, *argv],
            env=replica.env,
            cwd=self.cwd(replica),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def health_check(self, replica: Replica) -> subprocess.CompletedProcess[str]:
        """Run the service's health check once inside the replica, as the engine would."""
        health = self.service(replica.service)["healthcheck"]
        test = [unescape(a) for a in health["test"]]
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        timeout = duration_seconds(health.get("timeout", "30s"))
        try:
            return self.exec(replica, argv, timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", f"health check timed out after {timeout} s")

    def wait_healthy(self, replica: Replica) -> subprocess.CompletedProcess[str]:
        """Probe like the engine: every start_interval during start_period, then every interval, until
        the check passes or `retries` probes after the start period have failed. Returns the last probe."""
        health = self.service(replica.service)["healthcheck"]
        start_period = duration_seconds(health.get("start_period", "0s"))
        start_interval = duration_seconds(health.get("start_interval", "5s"))
        interval = duration_seconds(health.get("interval", "30s"))
        started = time.monotonic()
        failures = 0
        while True:
            result = self.health_check(replica)
            if result.returncode == 0:
                return result
            in_start_period = time.monotonic() - started < start_period
            if not in_start_period:
                failures += 1
                if failures >= int(health.get("retries", 3)):
                    return result
            time.sleep(start_interval if in_start_period else interval)

    def stop(self, *replicas: Replica) -> list[Stopped]:
        """`docker compose stop` for these containers at once: each gets its service's stop_signal, and
        SIGKILL if it is still running when its stop_grace_period ends."""
        started = time.monotonic()
        deadlines = []
        for replica in replicas:
            assert replica.process is not None
            service = self.service(replica.service)
            deadlines.append(started + duration_seconds(service.get("stop_grace_period", "10s")))
            replica.process.send_signal(getattr(signal, service.get("stop_signal", "SIGTERM")))
        outcomes = []
        for replica, deadline in zip(replicas, deadlines, strict=True):
            process = replica.process
            assert process is not None
            killed = False
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                killed = True
            outcomes.append(Stopped(process.returncode, killed, time.monotonic() - started))
        return outcomes
