"""The Java pieces the Kafka path needs, fetched from Maven Central into a cache outside the clone.

Each bundle is a tiny generated pom whose runtime dependencies ``mvn dependency:copy-dependencies``
copies into ``~/.cache/alphastream/jars/<bundle>-<version>/lib``; a marker file written last
makes a second fetch a no-op. Versions are the ones Maven Central serves here (see
docs/kafka-flink.md for what was tried and refused).

    python -m alphastream.java_jars          # fetch every bundle (idempotent, ~1 s when cached)
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    excluded_groups: tuple[str, ...] = ()

    def pom_xml(self) -> str:
        exclusions = "".join(f"<exclusion><groupId>{group}</groupId><artifactId>*</artifactId></exclusion>"
                             for group in self.excluded_groups)
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
# The newest Beam Java release whose expansion service and KafkaIO resolve on Maven Central here;
# the shaded beam-sdks-java-io-expansion-service jar is refused at every version tried.
BEAM_JAVA_VERSION = "2.73.0"

KAFKA_BROKER = JarBundle("kafka-broker", KAFKA_VERSION, (
    Dependency("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    # The broker logs through SLF4J 1.x; without a binding its log (and our ready check) is silent.
    Dependency("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
))
KAFKA_EXPANSION_SERVICE = JarBundle("beam-kafka-expansion-service", BEAM_JAVA_VERSION, (
    Dependency("org.apache.beam", "beam-sdks-java-expansion-service", BEAM_JAVA_VERSION),
    # Confluent's schema-registry serializers live outside Maven Central; only Avro-registry reads need them.
    Dependency("org.apache.beam", "beam-sdks-java-io-kafka", BEAM_JAVA_VERSION, excluded_groups=("io.confluent",)),
    Dependency("org.apache.kafka", "kafka-clients", KAFKA_VERSION),
))
BUNDLES = (KAFKA_BROKER, KAFKA_EXPANSION_SERVICE)


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
    parser = argparse.ArgumentParser(prog="python -m alphastream.java_jars",
                                     description=f"Fetch the Kafka broker and Beam expansion service jars into {CACHE_DIR}.")
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        for bundle in BUNDLES:
            print(f"{bundle.name} {bundle.version}: {fetch(bundle)}")
    except JarsMissingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
