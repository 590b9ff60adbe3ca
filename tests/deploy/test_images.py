"""The container images install what their service needs and nothing heavier: the Cloud Run
images carry no Beam, the pipeline image carries the Beam version setup.py pins, and each
image's entry point is the command Terraform runs it with. No Docker here: the Dockerfiles are
read, and the requirements resolved from setup.py itself."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement

from tests.fixtures import hcl

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "terraform" / "gcp" / "images"
SERVICES_DOCKERFILE = IMAGES / "Dockerfile"
PIPELINE_DOCKERFILE = IMAGES / "pipeline.Dockerfile"
CONSTRAINTS = IMAGES / "constraints.txt"
# Build target -> the extras its service needs, and the Cloud Run resource that runs it.
SERVICE_EXTRAS = {"api": {"api"}, "dashboard": {"dash"}, "ingestion": {"ingestion"}}
SERVICE_RESOURCES = {"api": ("google_cloud_run_v2_service", "api"),
                     "dashboard": ("google_cloud_run_v2_service", "dashboard"),
                     "ingestion": ("google_cloud_run_v2_worker_pool", "ingestion")}
PIPELINE_EXTRAS = {"pipeline"}
BEAM = "apache-beam"


@pytest.fixture(scope="module")
def package() -> dict:
    """setup()'s keyword arguments, as setup.py passes them."""
    captured: dict = {}
    original = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        source = (REPO / "setup.py").read_text()
        exec(compile(source, "setup.py", "exec"), {"__name__": "setup"})  # noqa: S102 (our own setup.py)
    finally:
        setuptools.setup = original
    return captured


def _stages(text: str) -> dict[str, str]:
    """Dockerfile stage name -> its instructions (the text up to the next FROM)."""
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    return {(re.match(r"\S+ AS (\S+)", part) or re.match(r"(\S+)", part)).group(1): part for part in parts}


def _installed_extras(stage: str) -> set[str]:
    installs = re.findall(r'pip install [^\n]*"\.\[([a-z,]+)\]"', stage)
    assert installs, f"no pip install of the project in:\n{stage}"
    return {extra for group in installs for extra in group.split(",")}


def _requirements(package: dict, extras: set[str]) -> set[str]:
    names = [Requirement(r).name for r in package["install_requires"]]
    missing = extras - set(package["extras_require"])
    assert not missing, f"setup.py has no extra {sorted(missing)}"
    names += [Requirement(r).name for extra in extras for r in package["extras_require"][extra]]
    return {name.lower() for name in names}


def _cmd(stage: str) -> list[str]:
    (cmd,) = re.findall(r"^CMD (\[.*\])$", stage, re.M)
    return json.loads(cmd)


@pytest.mark.parametrize("target", sorted(SERVICE_EXTRAS))
def test_each_service_image_installs_exactly_its_extras_and_no_beam(package: dict, target: str):
    stage = _stages(SERVICES_DOCKERFILE.read_text())[target]
    extras = _installed_extras(stage)
    assert extras == SERVICE_EXTRAS[target]
    assert extras <= set(package["extras_require"]), f"setup.py has no extra {sorted(extras)}"
    assert BEAM not in _requirements(package, extras), (
        f"the {target} image would install Beam: setup.py must keep Beam out of install_requires "
        "(in the 'pipeline' extra)")


@pytest.mark.parametrize("target", sorted(SERVICE_EXTRAS))
def test_each_service_image_runs_the_command_terraform_gives_it(target: str):
    rtype, name = SERVICE_RESOURCES[target]
    resources = {(t, n): body for block in hcl.load(REPO / "terraform" / "gcp" / "run.tf")["resource"]
                 for t, named in block.items() for n, body in named.items()}
    (template,) = resources[(rtype, name)]["template"]
    (container,) = template["containers"]
    command = [hcl.unquote(word) for word in container["command"]]
    assert _cmd(_stages(SERVICES_DOCKERFILE.read_text())[target]) == command


def test_pipeline_image_is_beams_sdk_image_of_the_pinned_version_with_the_launcher(package: dict):
    text = PIPELINE_DOCKERFILE.read_text()
    beam_pin = next(Requirement(r) for r in package["install_requires"] + package["extras_require"].get("pipeline", [])
                    if Requirement(r).name == BEAM)
    (version,) = re.findall(r"^ARG BEAM_VERSION=(\S+)$", text, re.M)
    assert beam_pin.specifier == f"=={version}" or str(beam_pin.specifier) == f"=={version}"
    assert re.search(r"^FROM apache/beam_python3\.11_sdk:\$\{BEAM_VERSION\}$", text, re.M)
    assert "python311-template-launcher-base" in text, "the launcher must match the SDK image's Python"
    assert _installed_extras(text) == PIPELINE_EXTRAS
    assert BEAM in _requirements(package, PIPELINE_EXTRAS)
    (entry,) = re.findall(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/(\S+)$", text, re.M)
    assert (REPO / entry).is_file() and "__main__" in (REPO / entry).read_text()
    assert re.search(r'^ENTRYPOINT \["/opt/apache/beam/boot"\]$', text, re.M), "workers start Beam's SDK harness"


def test_constraints_pin_every_requirement_and_the_same_beam(package: dict):
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = str(requirement.specifier)
    every_extra = set(SERVICE_EXTRAS["api"] | SERVICE_EXTRAS["dashboard"] | SERVICE_EXTRAS["ingestion"])
    needed = _requirements(package, every_extra & set(package["extras_require"]))
    assert needed <= set(pins), f"not pinned in constraints.txt: {sorted(needed - set(pins))}"
    (version,) = re.findall(r"^ARG BEAM_VERSION=(\S+)$", PIPELINE_DOCKERFILE.read_text(), re.M)
    assert pins[BEAM] == f"=={version}"
