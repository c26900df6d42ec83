"""docker-compose.ha.yml (master, replica, three Sentinels) checked as the main file is: the real Compose
loader, the Compose Specification schema, and rules about the resolved model."""

from __future__ import annotations

import re
from typing import Any

import pytest

from common.sentinel import parse_sentinel_url
from tests.deploy.compose import (
    ENV_EXAMPLE,
    HA_COMPOSE_FILE,
    ROOT,
    argv_of,
    built_from_our_dockerfile,
    image_cmd,
    interpolated_variables,
    resolved_model,
    run_tool,
    tool,
    unescape,
)
from tests.deploy.test_compose_files import our_scripts, parse_with_click

pytestmark = pytest.mark.deploy

SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = resolved_model(profiles=(), file=HA_COMPOSE_FILE)["services"]
    return found


def test_the_real_compose_loader_accepts_the_file() -> None:
    result = run_tool(
        tool("docker-compose"), "-f", str(HA_COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "config", "-q"
    )
    assert result.returncode == 0, result.stderr


def test_the_file_matches_the_compose_specification_schema() -> None:
    result = run_tool(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(HA_COMPOSE_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_the_file_reads_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert interpolated_variables(HA_COMPOSE_FILE) <= documented


def test_clients_find_the_master_through_all_three_sentinels_with_both_passwords() -> None:
    services = resolved_model(
        {"REDIS_PASSWORD": "data-pw", "SENTINEL_PASSWORD": "sent-pw", "DW_MIN_REPLICAS": "1"},
        profiles=(),
        file=HA_COMPOSE_FILE,
    )["services"]
    for name in ("worker", "dispatcher"):
        env = services[name]["environment"]
        target = parse_sentinel_url(env["REDIS_URL"], env["DW_SENTINEL_PASSWORD"])
        assert target.sentinels == [(s, 26379) for s in SENTINELS]
        assert (target.master, target.password, target.sentinel_password) == ("dwmaster", "data-pw", "sent-pw")
        assert env["DW_MIN_REPLICAS"] == "1"
    for name in ("redis-master", "redis-replica"):
        argv = argv_of(services[name], [])
        assert argv[argv.index("--requirepass") + 1] == "data-pw"
        assert argv[argv.index("--masterauth") + 1] == "data-pw", "a demoted master must sync from the new one"
    replica = argv_of(services["redis-replica"], [])
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis-master", "6379"]
    for name in SENTINELS:
        script = unescape(services[name]["command"][-1])
        assert "sentinel monitor dwmaster redis-master 6379 2" in script  # a quorum of 2 of the 3
        assert services[name]["environment"] == {"REDIS_PASSWORD": "data-pw", "SENTINEL_PASSWORD": "sent-pw"}
        assert "--sentinel" in script


def test_data_servers_keep_an_append_only_file_on_their_own_volumes(services: dict[str, dict[str, Any]]) -> None:
    sources = set()
    for name in ("redis-master", "redis-replica"):
        argv = argv_of(services[name], [])
        assert argv[argv.index("--appendonly") + 1] == "yes"
        (mount,) = [v for v in services[name]["volumes"] if v["target"] == argv[argv.index("--dir") + 1]]
        sources.add(mount["source"])
    assert len(sources) == 2


def test_every_healthy_dependency_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                health = services[dependency].get("healthcheck")
                assert health and health["test"][0] in ("CMD", "CMD-SHELL"), f"{name} waits for {dependency}"
    assert set(services["worker"]["depends_on"]) >= set(SENTINELS)


def test_every_command_names_a_real_cli_entry_point(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    commands = our_scripts()
    checked = []
    for name, service in services.items():
        if built_from_our_dockerfile(service):
            argv = argv_of(service, image_cmd())
            parse_with_click(argv, commands)
            checked.append(name)
    assert sorted(checked) == ["dispatcher", "worker"]
