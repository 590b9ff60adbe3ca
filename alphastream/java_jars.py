"""The Java pieces the Kafka path and the Flink runner need, fetched from Maven Central into a cache
outside the clone, and Beam's Prism runner (which runs the Java Kafka reader locally), built with
``go install``.

Each bundle is a tiny generated pom whose runtime dependencies ``mvn dependency:copy-dependencies``
copies into ``~/.cache/alphastream/jars/<bundle>-<version>/lib``; a marker file written last
makes a second fetch a no-op. Versions are the ones Maven Central serves here (see
docs/kafka-flink.md for what was tried and refused).

    python -m alphastream.java_jars          # fetch every bundle and Prism (idempotent: cached ones are kept)
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

CACHE_DIR = Path.home() / ".cache" / "alphastream" / "jars"
FETCH_COMMAND = ".venv/bin/python -m alphastream.java_jars"
MVN_TIMEOUT_SECONDS = 900
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class Dependency:
    group: str
    artifact: str
    version: str
    excluded: tuple[str, ...] = ()  # "group:artifact" of dependencies to leave out; artifact may be *

    def pom_xml(self) -> str:
        exclusions = "".join(f"<exclusion><groupId>{group}</groupId><artifactId>{artifact}</artifactId></exclusion>"
                             for group, artifact in (name.split(":") for name in self.excluded))
        return (f"<dependency><groupId>{self.group}</groupId><artifactId>{self.artifact}</artifactId>"
                f"<version>{self.version}</version><exclusions>{exclusions}</exclusions></dependency>")


@dataclass(frozen=True)
class JarBundle:
    """A named classpath: some Maven artifacts and their runtime dependencies."""

    name: str
    version: str
    dependencies: tuple[Dependency, ...]

    @property
    def directory(self) -> Path:
        return CACHE_DIR / f"{self.name}-{self.version}"

    @property
    def lib(self) -> Path:
        return self.directory / "lib"

    def is_fetched(self) -> bool:
        """The marker holds the pom it was fetched for, so changing the dependencies re-fetches."""
        marker = self.directory / _COMPLETE_MARKER
        return marker.exists() and marker.read_text() == self.pom_xml()

    def classpath(self) -> str:
        """The bundle's jars joined for ``java -cp``; raises JarsMissingError if not fetched."""
        if not self.is_fetched():
            raise JarsMissingError(f"the {self.name} {self.version} jars are not in {self.directory}: "
                                   f"fetch them with `{FETCH_COMMAND}` (needs mvn and Maven Central)")
        return ":".join(str(jar) for jar in sorted(self.lib.glob("*.jar")))

    def pom_xml(self) -> str:
        deps = "".join(dep.pom_xml() for dep in self.dependencies)
        return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
                f"<groupId>alphastream.jars</groupId><artifactId>{self.name}</artifactId>"
                f"<version>{self.version}</version><dependencies>{deps}</dependencies></project>\n")


class JarsMissingError(RuntimeError):
    """A bundle is not in the cache; the message names the command that fetches it."""


KAFKA_VERSION = "4.1.1"
# The newest Beam Java release whose expansion service and KafkaIO resolve on Maven Central here
# (the shaded beam-sdks-java-io-expansion-service jar does not: docs/kafka-flink.md).
BEAM_JAVA_VERSION = "2.73.0"
# KafkaIO 2.73 is built against the 3.x client API (4.0 removed methods it calls); 3.9 clients
# talk to the 4.1 broker.
KAFKA_CLIENTS_VERSION = "3.9.1"

KAFKA_BROKER = JarBundle("kafka-broker", KAFKA_VERSION, (
    Dependency("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    # The broker logs through SLF4J 1.x; without a binding its log (and our ready check) is silent.
    Dependency("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
))
KAFKA_EXPANSION_SERVICE = JarBundle("beam-kafka-expansion-service", BEAM_JAVA_VERSION, (
    Dependency("org.apache.beam", "beam-sdks-java-expansion-service", BEAM_JAVA_VERSION),
    # Confluent's schema-registry serializers live outside Maven Central; only Avro-registry reads need them.
    Dependency("org.apache.beam", "beam-sdks-java-io-kafka", BEAM_JAVA_VERSION, excluded=("io.confluent:*",)),
    Dependency("org.apache.kafka", "kafka-clients", KAFKA_CLIENTS_VERSION),
    # The Java SDK harness (run by the worker pool, see local_services) sizes its caches with jamm,
    # which Beam's container image supplies and the harness's pom leaves out.
    Dependency("com.github.jbellis", "jamm", "0.4.0"),
    Dependency("org.slf4j", "slf4j-jdk14", "2.0.16"),  # the harness and KafkaIO log through SLF4J 2
))
# Beam's Flink job server, assembled from unshaded artifacts: Maven Central serves no
# beam-runners-flink-*-job-server jar, and of the Flink runners only beam-runners-flink-1.19 at
# 2.70.0, whose own beam-runners-java-job-service 2.70.0 is refused; 2.65.0 of that module (the
# only one served) runs with it, its Beam dependencies left to the runner's 2.70.0
# (docs/kafka-flink.md; tests/pipeline/test_flink_runner.py runs the pipeline on it).
FLINK_VERSION = "1.19"
BEAM_FLINK_RUNNER_VERSION = "2.70.0"
BEAM_JOB_SERVICE_VERSION = "2.65.0"
FLINK_JOB_SERVER_MAIN = "org.apache.beam.runners.flink.FlinkJobServerDriver"
FLINK_JOB_SERVER = JarBundle(f"beam-flink-{FLINK_VERSION}-job-server", BEAM_FLINK_RUNNER_VERSION, (
    Dependency("org.apache.beam", f"beam-runners-flink-{FLINK_VERSION}", BEAM_FLINK_RUNNER_VERSION,
               excluded=("org.apache.beam:beam-runners-java-job-service",)),
    Dependency("org.apache.beam", "beam-runners-java-job-service", BEAM_JOB_SERVICE_VERSION,
               excluded=("org.apache.beam:*",)),
    # The job server starts an expansion service of its own; its classes live in this module.
    Dependency("org.apache.beam", "beam-sdks-java-expansion-service", BEAM_FLINK_RUNNER_VERSION),
    Dependency("org.slf4j", "slf4j-simple", "2.0.16"),  # Flink and Beam log through SLF4J 2
))
BUNDLES = (KAFKA_BROKER, KAFKA_EXPANSION_SERVICE, FLINK_JOB_SERVER)
LAUNCHER_JAR = "launcher.jar"
_MANIFEST_LINE_BYTES = 72  # the jar manifest format's limit; longer values continue on lines starting with a space


def _folded(header: str) -> list[str]:
    """One manifest header as lines of at most 72 bytes, each continuation starting with a space
    (ASCII: bytes == characters)."""
    lines = [header[:_MANIFEST_LINE_BYTES]]
    rest = header[_MANIFEST_LINE_BYTES:]
    while rest:
        lines.append(" " + rest[:_MANIFEST_LINE_BYTES - 1])
        rest = rest[_MANIFEST_LINE_BYTES - 1:]
    return lines


def _manifest(main_class: str, class_path: list[str]) -> str:
    """A jar manifest naming the main class and the classpath (paths relative to the jar)."""
    headers = ["Manifest-Version: 1.0", f"Main-Class: {main_class}", "Class-Path: " + " ".join(class_path)]
    return "\r\n".join(line for header in headers for line in _folded(header)) + "\r\n\r\n"


def flink_job_server_jar(extra_jars: Sequence[Path] = (), name: str = LAUNCHER_JAR) -> Path:
    """A one-file launcher of the cached Flink job server for ``--flink_job_server_jar``: Beam's
    FlinkRunner starts ``java -jar`` on one jar, and this one holds only a manifest whose
    classpath names the bundle's jars (and ``extra_jars``, under another ``name``). Raises
    JarsMissingError (naming the fetch command) if the bundle is not fetched."""
    import zipfile

    FLINK_JOB_SERVER.classpath()  # raises if not fetched
    launcher = FLINK_JOB_SERVER.directory / name
    jars = [f"lib/{jar.name}" for jar in sorted(FLINK_JOB_SERVER.lib.glob("*.jar"))]
    jars += [os.path.relpath(jar, FLINK_JOB_SERVER.directory) for jar in extra_jars]
    manifest = _manifest(FLINK_JOB_SERVER_MAIN, jars)
    if launcher.exists():
        try:
            with zipfile.ZipFile(launcher) as archive:
                if archive.read("META-INF/MANIFEST.MF").decode() == manifest:
                    return launcher
        except (zipfile.BadZipFile, KeyError):  # not a launcher we wrote: write it anew
            pass
    partial = launcher.with_suffix(".partial")  # written aside: never a half-written launcher under its name
    with zipfile.ZipFile(partial, "w") as archive:
        archive.writestr("META-INF/MANIFEST.MF", manifest)
    partial.replace(launcher)
    return launcher


# Beam's Prism runner, built from the Go module of the installed Python SDK's version: Python
# Beam would download a release binary from GitHub, which this network does not serve.
PRISM_MODULE = "github.com/apache/beam/sdks/v2/go/cmd/prism"
GO_BUILD_TIMEOUT_SECONDS = 1200


def prism_path() -> Path:
    import apache_beam

    return CACHE_DIR.parent / f"prism-{apache_beam.__version__}" / "prism"


def prism_binary() -> Path:
    """The cached Prism binary; raises JarsMissingError (naming the fetch command) if absent."""
    path = prism_path()
    if not path.exists():
        raise JarsMissingError(f"Beam's Prism runner is not built at {path}: build it with `{FETCH_COMMAND}` "
                               "(needs Go and the Go module proxy)")
    return path


def fetch_prism() -> Path:
    """``go install`` Prism into the cache unless already there; returns the binary."""
    path = prism_path()
    if path.exists():
        return path
    go = shutil.which("go")
    if go is None:
        raise JarsMissingError("building Beam's Prism runner needs Go (https://go.dev/dl/)")
    import apache_beam

    log.info("building Prism %s into %s (a few minutes the first time) ...", apache_beam.__version__, path.parent)
    run = subprocess.run([go, "install", f"{PRISM_MODULE}@v{apache_beam.__version__}"], capture_output=True,
                         text=True, timeout=GO_BUILD_TIMEOUT_SECONDS, env={**os.environ, "GOBIN": str(path.parent)})
    if run.returncode != 0:
        raise JarsMissingError(f"go install {PRISM_MODULE}@v{apache_beam.__version__} failed:\n"
                               f"{(run.stdout + run.stderr)[-3000:]}")
    return path


def fetch(bundle: JarBundle) -> Path:
    """Copy the bundle's jars into the cache unless already there; returns its lib folder."""
    if bundle.is_fetched():
        return bundle.lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsMissingError(f"fetching the {bundle.name} jars needs Maven (Debian: apt-get install maven)")
    bundle.directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(bundle.lib, ignore_errors=True)  # a half-finished earlier fetch
    (bundle.directory / "pom.xml").write_text(bundle.pom_xml())
    log.info("fetching %s %s into %s ...", bundle.name, bundle.version, bundle.lib)
    run = subprocess.run([mvn, "-B", "-q", "dependency:copy-dependencies", "-DincludeScope=runtime",
                          f"-DoutputDirectory={bundle.lib}"], cwd=bundle.directory, capture_output=True,
                         text=True, timeout=MVN_TIMEOUT_SECONDS)
    if run.returncode != 0:
        raise JarsMissingError(f"mvn could not fetch the {bundle.name} {bundle.version} jars "
                               f"(pom {bundle.directory / 'pom.xml'}):\n{(run.stdout + run.stderr)[-3000:]}")
    (bundle.directory / _COMPLETE_MARKER).write_text(bundle.pom_xml())
    return bundle.lib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alphastream.java_jars",
        description=f"Fetch the Kafka broker, Beam expansion service and Flink job server jars into "
                    f"{CACHE_DIR} and build Beam's Prism runner beside them.")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        for bundle in BUNDLES:
            print(f"{bundle.name} {bundle.version}: {fetch(bundle)}")
        print(f"flink job server launcher: {flink_job_server_jar()}")
        print(f"prism: {fetch_prism()}")
    except JarsMissingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
