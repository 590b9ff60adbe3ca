"""Shared fixtures: each real server (PostgreSQL, Pub/Sub emulator, GCS emulator, Chromium, Kafka)
has its own module under tests/fixtures/, loaded here as a plugin so every test can use it."""
import importlib.util

import pytest

_FIXTURE_MODULES = [
    "tests.fixtures.postgres",
    "tests.fixtures.pubsub",
    "tests.fixtures.gcs",
    "tests.fixtures.browser",
    "tests.fixtures.kafka",
]
# A fixture module appears when the component that needs it lands; load those that exist.
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]


@pytest.fixture
def no_pubsub_emulator(monkeypatch):
    """Graphs built for a remote runner or with made-up names: the session's Pub/Sub emulator (its
    PUBSUB_EMULATOR_HOST) must not answer their existence checks."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
