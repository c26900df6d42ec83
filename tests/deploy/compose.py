"""What the deployment tests share: the resolved Compose model, the tools that check it, skip-or-fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
HA_COMPOSE_FILE = ROOT / "docker-compose.ha.yml"
"""The high-availability variant: a master, a replica and three Sentinels."""
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"


def tool(name: str) -> str:
    """A command-line tool from this virtualenv (the deploy-check extra), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed (pip install -e '.[deploy-check]')")
    return found


def run_tool(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checker in the repository root and capture its output."""
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})}
    )


def resolved_model(
    env: dict[str, str] | None = None, profiles: tuple[str, ...] = ("monitoring",), file: Path = COMPOSE_FILE
) -> dict[str, Any]:
    """docker-compose.yml (or `file`) as the real Compose loader resolves it (interpolated, defaults filled in).

    Variables come from .env.example (the documented defaults) overlaid with `env`, never from a
    developer's own .env, so the checks see what a fresh checkout sees.
    """
    argv = [tool("docker-compose"), "-f", str(file), "--env-file", str(ENV_EXAMPLE)]
    for profile in profiles:
        argv += ["--profile", profile]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k not in _compose_vars(file)}
    result = subprocess.run(
        [*argv, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _compose_vars(file: Path = COMPOSE_FILE) -> set[str]:
    """Variables that docker-compose.yml (or `file`) interpolates (${NAME...})."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", file.read_text()))


def interpolated_variables(file: Path = COMPOSE_FILE) -> set[str]:
    """Every variable docker-compose.yml (or `file`) reads from the environment or .env."""
    return _compose_vars(file)


def unescape(value: str) -> str:
    """A string of the resolved model as the container sees it (`config` writes a literal $ as $$)."""
    return value.replace("$$", "$")


def argv_of(service: dict[str, Any], image_cmd: list[str]) -> list[str]:
    """The argv a service's container runs: its entrypoint, then its command (else the image's CMD)."""
    entrypoint = service.get("entrypoint") or []
    command = service.get("command")
    if command is None:
        command = [] if entrypoint else image_cmd
    return [unescape(a) for a in [*entrypoint, *command]]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), one list per stage."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def image_cmd() -> list[str]:
    """The final stage's CMD, in exec form."""
    (cmd,) = [line for line in dockerfile_stages()[-1] if line.upper().startswith("CMD ")]
    parsed: list[str] = json.loads(cmd[4:])
    return parsed


def image_env() -> dict[str, str]:
    """The final stage's ENV settings (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for line in dockerfile_stages()[-1]:
        if line.upper().startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def image_workdir() -> str:
    """The final stage's working directory."""
    return [line.split()[1] for line in dockerfile_stages()[-1] if line.upper().startswith("WORKDIR ")][-1]


def built_from_our_dockerfile(service: dict[str, Any]) -> bool:
    """Whether a service runs the image this repository's Dockerfile builds."""
    build = service.get("build")
    return (
        bool(build)
        and Path(build["context"]).resolve() == ROOT
        and build.get("dockerfile", "Dockerfile") == "Dockerfile"
    )


def duration_seconds(text: str) -> float:
    """Seconds in a Compose duration as `config` writes it (Go style: 1m30s, 500ms, 2m0s)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins)."""
    allowed = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if Path(path).match(pattern) or path == pattern or path.startswith(pattern + "/"):
            allowed = negate
    return allowed
