"""docker-compose.yml read as data: the properties of the deployment it describes.

No Docker engine is needed: this checks the file, which `docker compose config` would accept.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
#: The images the integration tests run against, read from their fixtures (not imported: a unit
#: test does not load the integration conftest).
TEST_IMAGES = dict(
    re.findall(
        r'^(MYSQL_IMAGE|REDIS_IMAGE) = "([^"]+)"', (ROOT / "tests" / "integration" / "conftest.py").read_text(), re.M
    )
)
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
STOCKADE_SERVICES = [name for name, s in SERVICES.items() if str(s.get("image", "")).startswith("stockade:")]
#: name:tag with a full version (x.y or x.y.z), never latest or a bare major.
PINNED = re.compile(r"^[\w./-]+:\d+\.\d+(\.\d+)?(-[\w.]+)?$")


def command(service: str) -> str:
    return " ".join(SERVICES[service]["command"])


def environment(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service].get("environment", {}).items()}


def test_only_the_proxy_publishes_a_port():
    assert [name for name, s in SERVICES.items() if s.get("ports")] == ["proxy"]
    assert SERVICES["proxy"]["image"].startswith("nginx:")


def test_the_proxy_buffers_requests_and_responses_and_forwards_to_the_api():
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    assert "./docker/nginx.conf:/etc/nginx/nginx.conf:ro" in SERVICES["proxy"]["volumes"]
    assert "proxy_request_buffering on;" in conf and "proxy_buffering on;" in conf
    assert "server api:8000;" in conf


def test_everything_but_the_proxy_is_on_the_internal_network_only():
    assert COMPOSE["networks"]["backend"]["internal"] is True
    for name, service in SERVICES.items():
        expected = ["frontend", "backend"] if name == "proxy" else ["backend"]
        assert service["networks"] == expected, name


def test_every_image_is_pinned_and_the_servers_are_the_ones_the_tests_use():
    for name, service in SERVICES.items():
        if name not in STOCKADE_SERVICES:
            assert PINNED.match(service["image"]), f"{name}: {service['image']}"
    assert SERVICES["mysql"]["image"] == TEST_IMAGES["MYSQL_IMAGE"]
    assert SERVICES["redis-cache"]["image"] == SERVICES["redis-broker"]["image"] == TEST_IMAGES["REDIS_IMAGE"]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", dockerfile)


@pytest.mark.parametrize(
    "service", ["api", "proxy", "tasks-api", "worker", "beat", "mysql", "redis-cache", "redis-broker"]
)
def test_every_long_running_service_has_a_healthcheck(service):
    check = SERVICES[service].get("healthcheck", {})
    assert not check.get("disable"), service
    # api: the image's HEALTHCHECK (GET /healthz) applies when compose sets none
    assert check.get("test") or service == "api", service


def test_the_worker_and_beat_healthchecks_probe_what_they_do():
    assert "inspect ping" in " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert "/var/lib/stockade-beat/heartbeat" in " ".join(SERVICES["beat"]["healthcheck"]["test"])


def test_secrets_are_files_given_only_to_the_services_that_use_them():
    assert all("file" in s for s in COMPOSE["secrets"].values())
    given = {name: set(s.get("secrets", [])) for name, s in SERVICES.items()}
    assert given["api"] == {"mysql_password", "admin_token", "webhook_secret"}
    assert given["mysql"] == {"mysql_password", "mysql_root_password"}
    for name in set(STOCKADE_SERVICES) - {"api"}:
        assert given[name] == {"mysql_password"}, name
    for name in ("proxy", "redis-cache", "redis-broker"):
        assert not given[name], name
    for name in SERVICES:
        assert not any(
            k in environment(name)
            for k in ("STOCKADE_ADMIN_TOKEN", "STOCKADE_WEBHOOK_SECRET", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD")
        ), name
    assert environment("api")["STOCKADE_ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
    assert environment("api")["STOCKADE_WEBHOOK_SECRET_FILE"] == "/run/secrets/webhook_secret"


def test_the_broker_never_evicts_and_the_cache_is_a_bounded_lru_apart_from_it():
    broker, cache = command("redis-broker"), command("redis-cache")
    assert "--maxmemory-policy noeviction" in broker
    assert "--maxmemory-policy allkeys-lru" in cache and "--maxmemory " in cache
    assert environment("api")["STOCKADE_BROKER_URL"].startswith("redis://redis-broker:")
    assert environment("api")["STOCKADE_REDIS_URL"].startswith("redis://redis-cache:")


def test_worker_counts_come_from_the_environment():
    assert "--workers ${STOCKADE_API_WORKERS:-4}" in command("api")
    assert "--concurrency ${STOCKADE_WORKER_CONCURRENCY:-200}" in command("worker")


def test_nothing_is_left_in_a_temp_folder():
    assert "--heartbeat /var/lib/stockade-beat/heartbeat" in command("beat")
    assert "beat-data:/var/lib/stockade-beat" in SERVICES["beat"]["volumes"]
    assert environment("api")["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert "/tmp" in SERVICES["api"]["tmpfs"]


def test_every_variable_compose_reads_is_in_the_env_example():
    example = (ROOT / ".env.example").read_text()
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in set(re.findall(r"\$\{(\w+)", text)):
        assert f"{variable}=" in example, variable
