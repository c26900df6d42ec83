"""A worker and a dispatcher reaching Redis over TLS with `rediss://...?ssl_ca_certs=`, as
docs/remote-workers.md tells a user to: real processes, a real TLS handshake, certificate checked."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import WorkerFactory, run_cli

pytestmark = pytest.mark.integration


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a server certificate it signed for localhost: (ca, cert, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    signing = ["-days", "1", "-extfile", ext, "-out", cert]
    steps = [
        ["req", "-x509", *new_key, "-days", "1", "-subj", "/CN=test CA", "-keyout", ca_key, "-out", ca],
        ["req", *new_key, "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", *signing],
    ]
    for step in steps:
        subprocess.run([openssl, *map(str, step)], check=True, capture_output=True, timeout=60)
    return ca, cert, key


class TlsTerminator:
    """TLS in front of a plain Redis, as stunnel or a cloud Redis endpoint provides it."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.handshake_errors: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> TlsTerminator:
        self._spawn(self._accept_loop)
        return self

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(None)
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                raw.close()
                continue
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            with self._lock:
                self.sockets += [client, backend]
            self._spawn(self._pump, client, backend)
            self._spawn(self._pump, backend, client)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stopping.set()
        for thread in self.threads[:1]:
            thread.join(timeout=5)
        self.listener.close()
        with self._lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self.threads:
            thread.join(timeout=5)


@pytest.fixture
def tls(redis_url: str, tmp_path: Path) -> Iterator[tuple[TlsTerminator, Path]]:
    ca, cert, key = make_certificates(tmp_path)
    port = urlsplit(redis_url).port
    assert port is not None
    terminator = TlsTerminator(port, cert, key).start()
    yield terminator, ca
    terminator.close()


def check(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_URL": url},
        check=False,
    )


def test_a_worker_joins_over_tls_and_runs_a_batch(
    tls: tuple[TlsTerminator, Path], start_worker: WorkerFactory, tmp_path: Path
) -> None:
    terminator, ca = tls
    url = f"rediss://localhost:{terminator.port}/0?ssl_ca_certs={ca}"
    start_worker(env={"REDIS_URL": url})  # returns once the worker has registered through the TLS endpoint

    assert check(url).returncode == 0

    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\nmultiply 6 7\n")
    submitted = run_cli("submit", "--json", "--ordered", str(batch), env={"REDIS_URL": url})
    assert submitted.returncode == 0, submitted.stderr
    assert [line.count('"ok":true') for line in submitted.stdout.splitlines()] == [1, 1]
    assert '"result":3' in submitted.stdout and '"result":42' in submitted.stdout

    status = run_cli("status", env={"REDIS_URL": url})
    assert status.returncode == 0 and "workers: 1 live" in status.stdout, status.stdout + status.stderr
    assert not terminator.handshake_errors


def test_an_unknown_certificate_authority_is_refused(tls: tuple[TlsTerminator, Path]) -> None:
    terminator, _ = tls
    refused = check(f"rediss://localhost:{terminator.port}/0")  # the system CAs did not sign this server
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "TLS handshake failed" in refused.stderr, refused.stderr
