"""Static checks in the test command: ruff and mypy over the Python code (configured in
pyproject.toml), terraform fmt, checkov over terraform/ (zero failures; a skip only inline, with
its reason), hadolint on every Dockerfile, and docs/deploy.md naming only outputs, build targets
and flags that exist.

The tools are part of the dev set-up (docs/deploy.md, "Checks"): a missing tool fails here
rather than skipping, so CI cannot pass without running them. checkov pins an old `packaging`
and ships its own `hcl2` module, so it lives in a venv of its own (.venv/checkov).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import hcl

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "terraform"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
DOCKERFILES = sorted(p for p in TF_ROOT.rglob("*Dockerfile*") if p.is_file())
TOOL_TIMEOUT_SECONDS = 300
# checkov rules that do not apply to a skip: each skip must say why, in at least a sentence.
MIN_SKIP_REASON_WORDS = 6


def _tool(name: str, *candidates: Path) -> str:
    for path in candidates:
        if path.exists():
            return str(path)
    found = shutil.which(name)
    assert found, (f"{name} is not installed: it is part of the dev set-up (pip install -e '.[dev]'; "
                   "checkov: python -m venv .venv/checkov && .venv/checkov/bin/pip install checkov)")
    return found


def _venv_bin(name: str) -> Path:
    return Path(sys.executable).with_name(name)


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_python_linters_are_clean(command: list[str]):
    """Each tool reads its configuration (files, rules, strictness) from pyproject.toml."""
    tool = _tool(command[0], _venv_bin(command[0]))
    result = subprocess.run([tool, *command[1:]], cwd=REPO, capture_output=True, text=True,
                            timeout=TOOL_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"{' '.join(command)} found problems:\n{result.stdout}{result.stderr}"


def test_terraform_fmt_check():
    terraform = _tool("terraform", _venv_bin("terraform"))
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)],
                            capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="session")
def checkov_report() -> dict:
    """One checkov run over terraform/ per test session (it takes ~10 s of CPU)."""
    checkov = _tool("checkov", REPO / ".venv" / "checkov" / "bin" / "checkov")
    result = subprocess.run(
        [checkov, "--directory", str(TF_ROOT), "--framework", "terraform", "--skip-download",
         "--compact", "--output", "json"], capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    assert result.stdout.strip(), f"checkov printed no report:\n{result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_nothing(checkov_report: dict):
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in checkov_report["results"]["failed_checks"]]
    assert checkov_report["summary"]["parsing_errors"] == 0
    assert checkov_report["summary"]["passed"] > 0, "checkov checked nothing: is it reading terraform/?"
    assert not failed, "checkov failures:\n" + "\n".join(failed)


def test_every_checkov_skip_gives_a_reason(checkov_report: dict):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "expected the documented skips; if none are left, drop this test's premise"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= MIN_SKIP_REASON_WORDS, f"{check['check_id']} on {check['resource']}: {reason!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_hadolint_is_clean(dockerfile: Path):
    hadolint = _tool("hadolint", _venv_bin("hadolint"))
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_ignores_say_why():
    for dockerfile in DOCKERFILES:
        lines = dockerfile.read_text().splitlines()
        reasons = " ".join(line for line in lines if line.startswith("#") and "hadolint ignore=" not in line)
        for rules in re.findall(r"hadolint ignore=([A-Z0-9,]+)", "\n".join(lines)):
            for rule in rules.split(","):
                assert rule in reasons, f"{dockerfile.name}: say in a comment why {rule} is ignored"


def test_there_are_dockerfiles_to_lint():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "pipeline.Dockerfile"}


# ---------------------------------------------------------------------------- docs/deploy.md


def _doc() -> str:
    return DEPLOY_DOC.read_text()


def test_deploy_doc_does_not_tell_anyone_to_pass_a_dsn():
    assert not re.search(r"--db_url(?!_secret)", _doc()), "the launch uses --db_url_secret; a DSN flag is stale advice"


def test_deploy_doc_reads_only_outputs_that_exist():
    outputs = {name for path in (TF_ROOT / "gcp").glob("*.tf") for block in hcl.load(path).get("output", [])
               for name in block}
    used = set(re.findall(r"output -raw ([a-z_]+)", _doc()))
    assert used, "expected terraform output commands in docs/deploy.md"
    assert used <= outputs, f"docs/deploy.md reads outputs that do not exist: {sorted(used - outputs)}"


def test_deploy_doc_builds_targets_that_exist():
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (TF_ROOT / "gcp" / "images" / "Dockerfile").read_text(), re.M))
    targets = set(re.findall(r"--target ([a-z]+)", _doc()))
    assert targets and targets <= stages, f"targets {sorted(targets - stages)} are not stages of the Dockerfile"
