"""The wheel builds without a setuptools warning and carries the files the code opens at run
time: the SQL migrations (store.migrate) and the dashboard's assets (Dash serves them)."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Not sources: copying them would only slow the build down.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".alphastream", "data", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory) -> tuple[str, Path]:
    """pip's build of a copy of the checkout (setuptools writes build/ and *.egg-info next to
    setup.py, and the checkout stays as it is): the build log and the wheel."""
    source = tmp_path_factory.mktemp("source") / "alphastream"
    shutil.copytree(REPO, source, ignore=NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheel")
    # With PYTHONDONTWRITEBYTECODE set, distutils logs "warning: byte-compiling is disabled".
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "--wheel-dir", str(out),
                          str(source)], capture_output=True, text=True, timeout=600, env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    (wheel,) = out.glob("alphastream-*.whl")
    return log, wheel


def test_the_wheel_builds_without_a_setuptools_warning(wheel_build):
    log, _ = wheel_build
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert warnings == []


def test_the_wheel_carries_the_migrations_and_the_dashboard_assets(wheel_build):
    _, wheel = wheel_build
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in (REPO / "pipeline" / "db" / "migrations", REPO / "dash_app" / "assets"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert path.relative_to(REPO).as_posix() in names
    assert "pipeline/__main__.py" in names and "serving/main.py" in names
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)
