"""Schemathesis against the API's own OpenAPI schema, served by uvicorn over a real PostgreSQL
filled by the pipeline: every operation, every check (no 5xx for any generated input; status
code, content type, headers and body conform to the schema the app publishes; valid input is
accepted and invalid input refused).

Generation is derandomized (hypothesis seeds it from the test's name), so a failure found once
is found on every run, on CI as here.
"""
from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from serving.main import create_app
from tests.fixtures.api import api_settings, serve

EXAMPLES_PER_OPERATION = 40  # enough to reach every parameter's edge cases; the file stays < 1 min
STREAM_SECONDS = 0.2  # the longest stream schemathesis may open (a bound the schema states)


SCHEMA_TEST_SETTINGS = {"api_stream_max_seconds": STREAM_SECONDS}


# The schema is the app's own; building the app does not touch a database, so it can be read
# at import time (schemathesis parametrizes at collection). The requests go to the same app,
# started on the module's database by the fixture below.
# Input valid for the schema may still name a symbol the store does not hold (404, accepted by
# default) or ask for what the store cannot answer: an interval no stored one divides, a range or
# roll-up over the limits (422, which the schema documents for these cases).
CONFIG = SchemathesisConfig.from_dict({"checks": {"positive_data_acceptance": {
    "expected-statuses": ["2xx", "401", "403", "404", "422"]}}})
schema = schemathesis.openapi.from_dict(create_app(api_settings(**SCHEMA_TEST_SETTINGS)).openapi(), config=CONFIG)


@pytest.fixture(scope="module")
def api_url(market_db) -> Iterator[str]:
    with serve(create_app(api_settings(**SCHEMA_TEST_SETTINGS), dsn=market_db)) as url:
        yield url


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, api_url):
    case.call_and_validate(base_url=api_url)


def test_every_operation_is_tested():
    tested = {(result.ok().path, result.ok().method.upper()) for result in schema.get_all_operations()}
    published = {(path, method.upper()) for path, item in create_app(api_settings()).openapi()["paths"].items()
                 for method in item}
    assert tested == published and ("/v1/stream/bars", "GET") in tested
