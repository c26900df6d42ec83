"""The deployment files, checked without a container engine: the real Compose loader, the Compose
Specification schema, hadolint, and rules about the resolved model that the tools do not know."""

from __future__ import annotations

import importlib.metadata
import re
from typing import Any

import click
import pytest
from packaging.requirements import Requirement

from tests.deploy.compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    argv_of,
    built_from_our_dockerfile,
    dockerfile_stages,
    dockerignore_allows,
    duration_seconds,
    image_cmd,
    interpolated_variables,
    resolved_model,
    run_tool,
    tool,
    unescape,
)
from tests.support import skip_or_fail

pytestmark = pytest.mark.deploy

DIST = importlib.metadata.distribution("redis-dispatch")


def requirements(extra: str | None = None) -> list[Requirement]:
    """The project's requirements as installed metadata states them: the main ones, or one extra's."""
    found = []
    for spec in DIST.requires or []:
        requirement = Requirement(spec)
        in_extra = requirement.marker is not None and requirement.marker.evaluate({"extra": extra or ""})
        if (requirement.marker is None and extra is None) or (extra is not None and in_extra):
            found.append(requirement)
    return found


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return resolved_model()


@pytest.fixture(scope="module")
def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = model["services"]
    return found


# --- the tools ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("profiles", [(), ("monitoring",)], ids=["default", "monitoring"])
def test_the_real_compose_loader_accepts_the_file(profiles: tuple[str, ...]) -> None:
    argv = [tool("docker-compose"), "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE)]
    for profile in profiles:
        argv += ["--profile", profile]
    result = run_tool(*argv, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_the_file_matches_the_compose_specification_schema() -> None:
    result = run_tool(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_passes_hadolint() -> None:
    result = run_tool(tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


# --- the worker scales -------------------------------------------------------------------------------


def test_the_worker_breaks_none_of_the_scale_rules(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    # Each of these pins a replica to one name, port or address: a second replica would conflict.
    assert "container_name" not in worker
    assert "hostname" not in worker, "every replica needs its own hostname for `worker --check`"
    assert "mac_address" not in worker
    assert not [p for p in worker.get("ports", []) if p.get("published")], "a published host port"
    for network in (worker.get("networks") or {}).values():
        assert not (network or {}).get("ipv4_address") and not (network or {}).get("ipv6_address")
    assert worker.get("network_mode") not in ("host",)
    assert not worker.get("deploy", {}).get("replicas") or worker["deploy"]["replicas"] >= 1


def test_the_worker_waits_for_redis_restarts_and_stops_warm(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["restart"] == "unless-stopped"
    assert worker.get("stop_signal", "SIGTERM") in ("SIGTERM", "SIGINT")  # both mean a warm shutdown
    command = argv_of(worker, image_cmd())
    assert "--wait-for-redis" in command and float(command[command.index("--wait-for-redis") + 1]) > 0
    # Long enough to finish a chunk of tasks that each run up to the default task timeout (60 s).
    assert duration_seconds(worker["stop_grace_period"]) >= 90


def test_the_worker_health_check_runs_worker_check(services: dict[str, dict[str, Any]]) -> None:
    test = services["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:] == ["worker", "--check"]


def test_every_service_healthy_dependency_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                health = services[dependency].get("healthcheck")
                assert health and not health.get("disable"), f"{name} waits for {dependency} to be healthy"
                assert health["test"][0] in ("CMD", "CMD-SHELL"), health
                checked += 1
    assert checked >= 3


# --- redis keeps its data ----------------------------------------------------------------------------


def test_redis_is_pinned_and_keeps_an_append_only_file_on_a_named_volume(model: dict[str, Any]) -> None:
    redis = model["services"]["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+(-[a-z0-9.]+)?", redis["image"]), redis["image"]
    argv = argv_of(redis, [])
    assert argv[0] == "redis-server"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    data_dir = argv[argv.index("--dir") + 1]
    (mount,) = [v for v in redis["volumes"] if v["target"] == data_dir]
    assert mount["type"] == "volume"
    assert mount["source"] in model["volumes"]


def test_the_redis_password_reaches_redis_and_every_client() -> None:
    model = resolved_model({"REDIS_PASSWORD": "pw-123"})
    services = model["services"]
    redis_argv = argv_of(services["redis"], [])
    assert redis_argv[redis_argv.index("--requirepass") + 1] == "pw-123"
    for name in ("worker", "dispatcher"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://:pw-123@redis:6379/0"
    assert services["dashboard"]["environment"]["RQ_DASHBOARD_REDIS_URL"] == "redis://:pw-123@redis:6379/0"


def test_every_variable_the_compose_file_reads_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert interpolated_variables() <= documented


# --- commands name real entry points -----------------------------------------------------------------


def our_scripts() -> dict[str, click.Command]:
    """The console scripts the project declares, as the click commands they run."""
    commands = {}
    for entry in DIST.entry_points:
        if entry.group == "console_scripts":
            command = entry.load()
            assert isinstance(command, click.Command)
            commands[entry.name] = command
    assert {"dispatcher", "worker"} <= set(commands)
    return commands


def parse_with_click(argv: list[str], commands: dict[str, click.Command]) -> None:
    """Parse argv exactly as the console script would, without running it (bad usage raises)."""
    command = commands[argv[0]]
    args = argv[1:]
    if isinstance(command, click.Group):
        assert args, f"{argv}: no subcommand"
        parent = click.Context(command, info_name=argv[0])
        sub = command.get_command(parent, args[0])
        assert sub is not None, f"{argv}: {argv[0]} has no subcommand {args[0]!r}"
        with sub.make_context(args[0], list(args[1:]), parent=parent):
            return
    with command.make_context(argv[0], list(args)):
        return


def extra_scripts(extra: str) -> dict[str, click.Command]:
    """Console scripts of the distributions an optional extra of ours installs, as click commands.

    A script whose entry point is a plain function that calls a click command (rq-dashboard's `main`)
    is represented by the one click command its module defines.
    """
    scripts = {}
    for requirement in requirements(extra):
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            skip_or_fail(f"{requirement.name} is not installed (pip install -e '.[deploy-check]')")
        for entry in dist.entry_points:
            if entry.group != "console_scripts":
                continue
            target = entry.load()
            if not isinstance(target, click.Command):
                module = importlib.import_module(entry.module)
                (target,) = [v for v in vars(module).values() if isinstance(v, click.Command)]
            scripts[entry.name] = target
    return scripts


def test_every_command_names_a_real_cli_entry_point(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the image's WORKDIR holds examples/, as the repository root does
    commands = our_scripts()
    checked = []
    for name, service in services.items():
        if not built_from_our_dockerfile(service):
            continue
        argvs = [argv_of(service, image_cmd())]
        health = service.get("healthcheck", {}).get("test")
        if health and health[0] == "CMD":
            argvs.append([unescape(a) for a in health[1:]])
        for argv in argvs:
            extras = (service.get("build", {}).get("args") or {}).get("EXTRAS", "fast").split(",")
            available = dict(commands)
            for extra in extras:
                if extra == "monitoring":  # the only extra whose scripts an image service runs
                    available.update(extra_scripts(extra))
            assert argv[0] in available, f"service {name} runs {argv[0]!r}: not a console script of the image"
            parse_with_click(argv, available)
            if argv[:2] == ["dispatcher", "dashboard"]:  # passes its options on to rq-dashboard's own CLI
                parse_with_click(["rq-dashboard", *argv[2:]], extra_scripts("monitoring"))
                argv = ["rq-dashboard", *argv[2:]]
            checked.append((name, argv[0]))
    assert ("worker", "worker") in checked
    assert ("dispatcher", "dispatcher") in checked
    assert ("dashboard", "rq-dashboard") in checked


def test_the_dispatcher_runs_the_example_batch_and_takes_other_subcommands(services: dict[str, dict[str, Any]]) -> None:
    dispatcher = services["dispatcher"]
    assert dispatcher["entrypoint"] == ["dispatcher"]  # so `compose run dispatcher submit ...` works
    argv = argv_of(dispatcher, image_cmd())
    assert argv[1] == "submit"
    assert (ROOT / argv[-1]).is_file() and argv[-1].startswith("examples/")


def test_the_command_check_catches_a_typo() -> None:
    commands = our_scripts()
    with pytest.raises(AssertionError):
        parse_with_click(["dispatcher", "sbumit", "examples/tasks.txt"], commands)
    with pytest.raises(click.UsageError):
        parse_with_click(["worker", "--chek"], commands)
    with pytest.raises(click.BadParameter):
        parse_with_click(["dispatcher", "submit", "examples/no-such-file.txt"], commands)
    with pytest.raises(click.UsageError):
        parse_with_click(["rq-dashboard", "--jsn"], extra_scripts("monitoring"))


# --- the image ---------------------------------------------------------------------------------------


def test_the_image_is_slim_pinned_non_root_and_without_build_tools() -> None:
    stages = dockerfile_stages()
    text = DOCKERFILE.read_text()
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", base.group(1)), "pin the Python base image"
    final = stages[-1]
    assert final[0].startswith("FROM ${PYTHON_IMAGE}")
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    joined = "\n".join(final)
    for tool_name in ("apt-get", "gcc", "build-essential", "pip install"):
        assert tool_name not in joined, f"{tool_name} in the final stage"
    assert len(stages) >= 2 and any("COPY --from=build" in line for line in final)


def test_the_image_installs_the_project_from_its_own_metadata() -> None:
    build = "\n".join(dockerfile_stages()[0])
    pattern = r'pip --python /opt/venv/bin/python install .*--constraint constraints.txt "\.\[\$\{EXTRAS\}\]"'
    assert re.search(pattern, build), build


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    copied = []
    for stage in dockerfile_stages():
        for line in stage:
            if line.startswith("COPY ") and "--from=" not in line:
                copied += [src.rstrip("/") for src in line.split()[1:-1] if not src.startswith("--")]
    assert "pyproject.toml" in copied and "examples" in copied
    for src in copied:
        assert (ROOT / src).exists(), src
        assert dockerignore_allows(src), f".dockerignore keeps {src} out of the build context"
    for secret in (".env", ".git", ".venv", "tests"):
        assert not dockerignore_allows(secret), f"{secret} would be sent to the image build"


def test_every_pinned_version_of_the_image_is_inside_the_project_ranges() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    needed = requirements() + requirements("fast") + requirements("monitoring")
    assert {"rq", "redis", "click", "hiredis", "rq-dashboard"} <= {r.name.lower() for r in needed}
    for requirement in needed:
        assert requirement.name.lower() in pins, f"constraints.txt has no pin for {requirement.name}"
        assert requirement.specifier.contains(pins[requirement.name.lower()]), (
            f"{requirement.name}=={pins[requirement.name.lower()]} is outside {requirement}"
        )
