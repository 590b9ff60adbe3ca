"""Shared fixtures: each real server (PostgreSQL, Pub/Sub emulator, GCS emulator, Chromium, Kafka)
and the API's test databases have a module under tests/fixtures/, loaded here as a plugin so every
test can use its fixtures without importing them."""
import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.pubsub",
    "tests.fixtures.gcs",
    "tests.fixtures.browser",
    "tests.fixtures.kafka",
    "tests.fixtures.api",
    "tests.fixtures.analytics",
]


@pytest.fixture
def no_pubsub_emulator(monkeypatch):
    """Graphs built for a remote runner or with made-up names: the session's Pub/Sub emulator (its
    PUBSUB_EMULATOR_HOST) must not answer their existence checks."""
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
