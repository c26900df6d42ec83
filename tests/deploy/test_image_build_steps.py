"""The Dockerfile's build stage, rehearsed on this machine's Python without a container engine.

Its COPY and RUN instructions run as written, with image paths moved under a temporary directory and
the base image's python and pip replaced by this interpreter's: the build context is complete, the
pip command line is valid, the pinned versions resolve from PyPI to wheels, and the result holds our
commands and no pip. What stays untested: the base image itself and its Python version.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.compose import ROOT, dockerfile_stages, dockerignore_allows

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(600)]

EXTRAS = "fast,monitoring"
"""The larger of the two builds the compose file asks for (the dashboard's)."""


def copy_like_docker(source: Path, target: Path, into: bool) -> None:
    """COPY: a directory's contents go to the target directory; a file goes into it (target ends in /)
    or becomes it."""
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        return
    if into:
        target.mkdir(parents=True, exist_ok=True)
        target = target / source.name
    shutil.copy(source, target)


def test_the_build_stage_runs_and_yields_our_commands_without_pip(tmp_path: Path) -> None:
    build, runtime = dockerfile_stages()[0], dockerfile_stages()[-1]
    image_root = tmp_path / "image"
    context = tmp_path / "context"  # what `docker build .` sends: the checkout minus .dockerignore
    context.mkdir()
    for entry in ROOT.iterdir():
        if dockerignore_allows(entry.name):
            copy_like_docker(entry, context / entry.name, into=False)

    def host(path: str) -> Path:
        return image_root / path.lstrip("/")

    args: dict[str, str] = {"EXTRAS": EXTRAS}
    cwd = image_root
    for line in build[1:]:
        keyword, _, rest = line.partition(" ")
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args.setdefault(name, default)
        elif keyword == "WORKDIR":
            cwd = host(rest)
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = rest.split()
            for source in sources:
                copy_like_docker(context / source, cwd / target, into=target.endswith("/"))
        elif keyword == "RUN":
            command = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest)
            command = command.replace("/opt/venv", str(host("/opt/venv")))
            command = re.sub(r"^python ", f"{sys.executable} ", command)
            command = re.sub(r"^pip ", f"{sys.executable} -m pip ", command)
            done = subprocess.run(
                ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=500, check=False
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout}\n{done.stderr}"
        else:
            assert keyword in ("ENV", "LABEL"), f"the rehearsal does not know {keyword}"

    copied = [line.split()[1:] for line in runtime if line.startswith("COPY --from=build")]
    assert copied == [["--from=build", "/opt/venv", "/opt/venv"]]
    venv = host("/opt/venv")
    for command in ("worker", "dispatcher", "rq-dashboard"):
        shown = subprocess.run(
            [str(venv / "bin" / command), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert shown.returncode == 0, shown.stderr
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import hiredis, six"], timeout=60, check=False).returncode == 0
    no_pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert no_pip.returncode != 0, "the image's virtualenv must not carry pip"
