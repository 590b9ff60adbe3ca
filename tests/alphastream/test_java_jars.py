"""The pieces of alphastream/java_jars.py that decide what Maven fetches and how the Flink job
server is launched: the poms' exclusions, and the manifest-only launcher jar whose Class-Path
names the bundle's jars (folded into the 72-byte lines the jar format allows). Everything here
works in a temporary cache; tests/pipeline/test_flink_runner.py runs the real job server."""
from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alphastream import java_jars
from alphastream.java_jars import (
    FLINK_JOB_SERVER,
    FLINK_JOB_SERVER_MAIN,
    Dependency,
    JarBundle,
    JarsMissingError,
    flink_job_server_jar,
)

MANIFEST = "META-INF/MANIFEST.MF"
MANIFEST_LINE_BYTES = 72  # the jar specification's limit, newline excluded
POM_NAMESPACE = "{http://maven.apache.org/POM/4.0.0}"
# Names as long as the bundle's longest, and as many, so the Class-Path header folds over a
# hundred lines and more.
FAKE_JARS = [f"beam-vendor-grpc-{n}_{n * 7 % 13}-0-shaded-library-with-a-long-name-{n}.{n % 5}.jar"
             for n in range(150)]
JAVA_SECONDS = 120

path_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=90)


def unfold(manifest: str) -> dict[str, str]:
    """The main section's headers as the jar specification reads them: a line that starts with a
    space continues the one before it, without that space."""
    main_section, separator, _ = manifest.partition("\r\n\r\n")
    assert separator, f"the manifest does not end its main section with an empty line: {manifest!r}"
    headers: list[str] = []
    for line in main_section.split("\r\n"):
        if line.startswith(" "):
            headers[-1] += line[1:]
        else:
            headers.append(line)
    return dict(header.split(": ", 1) for header in headers)


def assert_well_formed(manifest: str) -> None:
    lines = manifest.split("\r\n")
    assert lines[-2:] == ["", ""], "the main section ends with an empty line, and the file with a newline"
    for line in lines[:-2]:
        assert line, "an empty line inside the main section would end it"
        assert len(line.encode()) <= MANIFEST_LINE_BYTES, f"{len(line.encode())}-byte line: {line!r}"
    assert not lines[0].startswith(" ")
    for line in lines[1:-2]:
        assert line.startswith(" ") or ": " in line, f"neither a header nor a continuation: {line!r}"


@given(st.lists(st.builds(lambda *parts: "/".join(parts), path_segment, path_segment), max_size=40))
def test_manifest_lines_fit_the_jar_format_and_unfold_to_the_classpath(class_path):
    manifest = java_jars._manifest(FLINK_JOB_SERVER_MAIN, class_path)
    assert_well_formed(manifest)
    assert unfold(manifest) == {"Manifest-Version": "1.0", "Main-Class": FLINK_JOB_SERVER_MAIN,
                                "Class-Path": " ".join(class_path)}


@pytest.mark.parametrize("header_length", [MANIFEST_LINE_BYTES - 1, MANIFEST_LINE_BYTES, MANIFEST_LINE_BYTES + 1,
                                           2 * MANIFEST_LINE_BYTES - 1, 2 * MANIFEST_LINE_BYTES])
def test_manifest_folds_exactly_at_the_line_limit(header_length):
    """Headers that just fit, just overflow, or fill a continuation line to its last byte: the
    first line holds 72 bytes, each continuation a space and 71 more."""
    jar = "x" * (header_length - len("Class-Path: "))
    manifest = java_jars._manifest(FLINK_JOB_SERVER_MAIN, [jar])
    assert_well_formed(manifest)
    assert unfold(manifest)["Class-Path"] == jar
    continuations = -(-(header_length - MANIFEST_LINE_BYTES) // (MANIFEST_LINE_BYTES - 1))
    assert manifest.count("\r\n ") == max(continuations, 0)


@pytest.fixture
def job_server_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache in tmp_path; the Flink job server bundle is not fetched into it."""
    cache = tmp_path / "jars"
    monkeypatch.setattr(java_jars, "CACHE_DIR", cache)
    return cache


@pytest.fixture
def fetched_job_server(job_server_cache) -> Path:
    """The Flink job server bundle as a fetch leaves it, with empty stand-ins for its jars; returns
    its lib folder."""
    lib = FLINK_JOB_SERVER.lib
    lib.mkdir(parents=True)
    for name in FAKE_JARS:
        (lib / name).touch()
    (FLINK_JOB_SERVER.directory / java_jars._COMPLETE_MARKER).write_text(FLINK_JOB_SERVER.pom_xml())
    return lib


def launcher_manifest(launcher: Path) -> dict[str, str]:
    with zipfile.ZipFile(launcher) as archive:
        assert archive.namelist() == [MANIFEST], "the launcher holds a manifest and nothing else"
        manifest = archive.read(MANIFEST).decode()
    assert_well_formed(manifest)
    return unfold(manifest)


def lib_class_path(lib: Path) -> str:
    return " ".join(f"lib/{jar.name}" for jar in sorted(lib.glob("*.jar")))


def test_launcher_names_the_main_class_and_every_jar_of_the_lib_in_order(fetched_job_server):
    (fetched_job_server / "README.txt").touch()  # not a jar: not on the classpath
    launcher = flink_job_server_jar()
    assert launcher == FLINK_JOB_SERVER.directory / java_jars.LAUNCHER_JAR
    headers = launcher_manifest(launcher)
    assert headers["Main-Class"] == FLINK_JOB_SERVER_MAIN
    assert headers["Class-Path"] == lib_class_path(fetched_job_server)
    assert headers["Class-Path"].split(" ") == [f"lib/{name}" for name in sorted(FAKE_JARS)]
    assert sorted(p.name for p in FLINK_JOB_SERVER.directory.iterdir()) == [
        java_jars._COMPLETE_MARKER, java_jars.LAUNCHER_JAR, "lib"]  # no partial file left beside it


def test_an_up_to_date_launcher_is_kept(fetched_job_server):
    first = flink_job_server_jar().stat()
    again = flink_job_server_jar().stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)


@pytest.mark.parametrize("change", ["jar added", "jar removed", "launcher of another main class", "not a zip",
                                    "zip without a manifest"])
def test_a_launcher_that_no_longer_matches_the_lib_is_rewritten(fetched_job_server, change):
    launcher = flink_job_server_jar()
    if change == "jar added":
        (fetched_job_server / "zz-added-after-the-launcher-1.0.jar").touch()
    elif change == "jar removed":
        (fetched_job_server / FAKE_JARS[0]).unlink()
    elif change == "not a zip":  # e.g. a write cut short by a full disk
        launcher.write_bytes(b"PK\x03\x04 truncated")
    elif change == "zip without a manifest":
        with zipfile.ZipFile(launcher, "w") as archive:
            archive.writestr("README.txt", "not a launcher")
    else:
        with zipfile.ZipFile(launcher, "w") as archive:
            archive.writestr(MANIFEST, java_jars._manifest("org.example.OldDriver",
                                                           lib_class_path(fetched_job_server).split(" ")))
    assert flink_job_server_jar() == launcher
    headers = launcher_manifest(launcher)
    assert headers["Class-Path"] == lib_class_path(fetched_job_server)
    assert headers["Main-Class"] == FLINK_JOB_SERVER_MAIN


def test_java_reads_the_launchers_main_class_and_classpath(fetched_job_server, tmp_path):
    """The JDK's own manifest reader (which refuses lines over 512 bytes: an unfolded Class-Path
    of a real bundle is thousands) sees the main class and the whole classpath."""
    java = shutil.which("java")
    assert java, "the Flink job server and this test need a JDK on PATH (Debian: apt-get install default-jdk)"
    reader = tmp_path / "ReadManifest.java"
    reader.write_text("""
        import java.util.jar.Attributes;
        import java.util.jar.JarFile;

        public class ReadManifest {
            public static void main(String[] args) throws Exception {
                try (JarFile jar = new JarFile(args[0])) {
                    Attributes main = jar.getManifest().getMainAttributes();
                    System.out.println(main.getValue(Attributes.Name.MAIN_CLASS));
                    System.out.println(main.getValue(Attributes.Name.CLASS_PATH));
                }
            }
        }
    """)
    done = subprocess.run([java, str(reader), str(flink_job_server_jar())], capture_output=True, text=True,
                          timeout=JAVA_SECONDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [FLINK_JOB_SERVER_MAIN, lib_class_path(fetched_job_server)]


def test_no_launcher_without_the_fetched_bundle(job_server_cache):
    with pytest.raises(JarsMissingError, match=java_jars.FETCH_COMMAND):
        flink_job_server_jar()
    assert not job_server_cache.exists()


def test_a_bundle_fetched_for_other_dependencies_is_fetched_again(fetched_job_server):
    """The marker holds the pom it was fetched for: changing an exclusion means a new fetch."""
    changed = JarBundle(FLINK_JOB_SERVER.name, FLINK_JOB_SERVER.version, (
        Dependency("org.apache.beam", "beam-runners-java-job-service", java_jars.BEAM_JOB_SERVICE_VERSION),
        *FLINK_JOB_SERVER.dependencies[2:]))
    assert FLINK_JOB_SERVER.is_fetched()
    assert changed.directory == FLINK_JOB_SERVER.directory and not changed.is_fetched()
    with pytest.raises(JarsMissingError, match=java_jars.FETCH_COMMAND):
        changed.classpath()


def parse_dependency(element: ET.Element, namespace: str = "") -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(group, artifact, version) and the (group, artifact) exclusions of a <dependency>."""
    def texts(node: ET.Element, *tags: str) -> tuple[str, ...]:
        return tuple(node.findtext(f"{namespace}{tag}") or "" for tag in tags)

    exclusions = [texts(e, "groupId", "artifactId")
                  for e in element.iterfind(f"{namespace}exclusions/{namespace}exclusion")]
    return texts(element, "groupId", "artifactId", "version"), exclusions


@pytest.mark.parametrize("excluded, expected", [
    ((), []),
    (("org.apache.beam:beam-runners-java-job-service",), [("org.apache.beam", "beam-runners-java-job-service")]),
    (("io.confluent:*",), [("io.confluent", "*")]),
    (("org.apache.beam:*", "org.slf4j:slf4j-api"), [("org.apache.beam", "*"), ("org.slf4j", "slf4j-api")]),
])
def test_dependency_pom_lists_its_exclusions(excluded, expected):
    xml = Dependency("org.example", "thing", "1.2.3", excluded=excluded).pom_xml()
    assert parse_dependency(ET.fromstring(xml)) == (("org.example", "thing", "1.2.3"), expected)


def test_the_job_server_pom_takes_the_job_service_from_2_65_without_its_beam_dependencies():
    """What makes the assembled job server run: the Flink runner's own job-service dependency
    (a version Maven Central refuses) is left out, and the job service that is served comes
    without the Beam modules of its release, which the runner's release provides."""
    project = ET.fromstring(FLINK_JOB_SERVER.pom_xml())
    dependencies = [parse_dependency(d, POM_NAMESPACE) for d in project.iterfind(
        f"{POM_NAMESPACE}dependencies/{POM_NAMESPACE}dependency")]
    assert [coordinates for coordinates, _ in dependencies] == [
        (d.group, d.artifact, d.version) for d in FLINK_JOB_SERVER.dependencies]
    by_artifact = {coordinates[1]: (coordinates[2], exclusions) for coordinates, exclusions in dependencies}
    assert by_artifact[f"beam-runners-flink-{java_jars.FLINK_VERSION}"] == (
        java_jars.BEAM_FLINK_RUNNER_VERSION, [("org.apache.beam", "beam-runners-java-job-service")])
    assert by_artifact["beam-runners-java-job-service"] == (
        java_jars.BEAM_JOB_SERVICE_VERSION, [("org.apache.beam", "*")])
