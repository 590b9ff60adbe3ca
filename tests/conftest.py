"""Shared fixtures: each real server (PostgreSQL, Pub/Sub emulator, GCS emulator, Chromium, Kafka)
has its own module under tests/fixtures/, loaded here as a plugin so every test can use it."""
import importlib.util

_FIXTURE_MODULES = [
    "tests.fixtures.postgres",
    "tests.fixtures.pubsub",
    "tests.fixtures.gcs",
    "tests.fixtures.browser",
    "tests.fixtures.kafka",
]
# A fixture module appears when the component that needs it lands; load those that exist.
pytest_plugins = [m for m in _FIXTURE_MODULES if importlib.util.find_spec(m) is not None]
