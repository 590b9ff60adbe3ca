"""The Flex Template: metadata.json follows the pipeline's flags, gcloud builds the template spec
from it (offline, --print-only), and the template's --name=value parameters become arguments
``python -m pipeline`` accepts, streaming included."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.flex_template import template_argv
from pipeline.options import AlphastreamOptions
from pipeline.template_metadata import NOT_TEMPLATE_PARAMETERS, metadata

REPO = Path(__file__).resolve().parents[2]
METADATA = REPO / "terraform" / "gcp" / "flex_template" / "metadata.json"
IMAGE = "europe-west1-docker.pkg.dev/test-project/alphastream/pipeline:v1"
GCLOUD_TIMEOUT_SECONDS = 120
SUBSCRIPTION = "projects/test-project/subscriptions/ticks"


def _flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    AlphastreamOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions}


def test_committed_metadata_is_what_the_options_generate():
    assert json.loads(METADATA.read_text()) == metadata(), \
        "regenerate: python -m pipeline.template_metadata > terraform/gcp/flex_template/metadata.json"


def test_every_user_facing_flag_is_a_parameter_with_label_help_and_regex():
    parameters = {p["name"]: p for p in metadata()["parameters"]}
    flags = _flags()
    assert set(parameters) == set(flags) - set(NOT_TEMPLATE_PARAMETERS)
    assert set(NOT_TEMPLATE_PARAMETERS) <= set(flags), "an excluded flag no longer exists"
    for name, parameter in parameters.items():
        assert parameter["label"] and parameter["helpText"] and parameter["regexes"], name
        default = flags[name].default
        if isinstance(default, (int, float, str)) and not isinstance(default, bool) and name != "output":
            assert re.fullmatch(parameter["regexes"][0], str(default)), f"{name}'s default fails its own regex"


@pytest.mark.parametrize("name, good, bad", [
    ("source", "pubsub", "bigquery"),
    ("subscription", SUBSCRIPTION, "ticks"),
    ("db_url_secret", "projects/p/secrets/s/versions/latest", "projects/p/secrets/s"),
    ("intervals", "1m,5m,1h", "1 minute"),
    ("allowed_lateness", "300", "-1"),
    ("output", "gs://lake/bars", "data/lake"),
    ("no_db", "true", "yes please"),
])
def test_regexes_accept_good_values_and_refuse_bad_ones(name, good, bad):
    (regex,) = next(p for p in metadata()["parameters"] if p["name"] == name)["regexes"]
    assert re.fullmatch(regex, good) and not re.fullmatch(regex, bad)


def test_gcloud_builds_the_template_spec_offline(tmp_path: Path):
    gcloud = shutil.which("gcloud")
    assert gcloud, "gcloud is needed to build the Flex Template (Google Cloud SDK)"
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    result = subprocess.run(
        [gcloud, "dataflow", "flex-template", "build", "gs://alphastream-test/templates/bars.json", "--image", IMAGE,
         "--sdk-language", "PYTHON", "--metadata-file", str(METADATA), "--print-only", "--format", "json"],
        capture_output=True, text=True, timeout=GCLOUD_TIMEOUT_SECONDS, env=env)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    spec = json.loads(printed) if isinstance(printed, str) else printed  # gcloud prints the spec as a JSON string
    assert spec["image"] == IMAGE and spec["sdkInfo"]["language"] == "PYTHON"
    assert [p["name"] for p in spec["metadata"]["parameters"]] == [p["name"] for p in metadata()["parameters"]]


def test_template_parameters_become_pipeline_arguments_with_streaming_set_in_code():
    argv = template_argv([f"--source={'pubsub'}", f"--subscription={SUBSCRIPTION}", "--no_db=true",
                          "--write_ticks=false", "--allowed_lateness=600"])
    options = PipelineOptions(argv)
    assert options.view_as(StandardOptions).streaming, "a Pub/Sub job is a streaming job"
    opts = options.view_as(AlphastreamOptions)
    assert opts.no_db and not opts.write_ticks and opts.allowed_lateness == 600
    assert opts.subscription == SUBSCRIPTION


def test_a_files_back_fill_stays_batch():
    argv = template_argv(["--source=files", "--input=gs://alphastream-test/ticks/*.parquet"])
    assert not PipelineOptions(argv).view_as(StandardOptions).streaming


def test_a_switch_with_a_value_that_is_not_a_boolean_is_refused():
    with pytest.raises(SystemExit, match="--no_db='maybe'"):
        template_argv(["--no_db=maybe"])


def test_a_negatable_switch_set_false_in_a_template_turns_its_default_off():
    argv = template_argv(["--source=pubsub", f"--subscription={SUBSCRIPTION}", "--fill_gaps=false"])
    assert "--no-fill_gaps" in argv and "--fill_gaps" not in argv
    assert "--fill_gaps" in template_argv(["--source=pubsub", f"--subscription={SUBSCRIPTION}", "--fill_gaps=true"])
