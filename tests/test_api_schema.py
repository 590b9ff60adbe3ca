"""Schemathesis against the API's own OpenAPI schema, served by uvicorn over a real PostgreSQL
filled by the pipeline: no 5xx for any generated input, and every answer (status code,
content type, body) conforms to the schema the app publishes."""
from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from serving.main import create_app
from tests.test_api_support import api_settings, market_db, serve  # noqa: F401  (fixtures)

EXAMPLES_PER_OPERATION = 40  # enough to reach every parameter's edge cases; the file stays < 1 min
STREAM_SECONDS = 0.2  # the longest stream schemathesis may open (a bound the schema states)


SCHEMA_TEST_SETTINGS = {"api_stream_max_seconds": STREAM_SECONDS}


# The schema is the app's own; building the app does not touch a database, so it can be read
# at import time (schemathesis parametrizes at collection). The requests go to the same app,
# started on the module's database by the fixture below.
schema = schemathesis.openapi.from_dict(create_app(api_settings(**SCHEMA_TEST_SETTINGS)).openapi())


@pytest.fixture(scope="module")
def api_url(market_db) -> Iterator[str]:
    with serve(create_app(api_settings(**SCHEMA_TEST_SETTINGS), dsn=market_db)) as url:
        yield url


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_conforms_to_its_schema(case, api_url):
    # positive_data_acceptance is off: input valid for the schema may still name a symbol the
    # store does not hold (404) or an interval it cannot build (422), which the schema documents.
    case.call_and_validate(base_url=api_url, excluded_checks=[schemathesis.checks.positive_data_acceptance])
