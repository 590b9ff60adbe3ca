"""The PostgreSQL / TimescaleDB store, shared by the pipeline and the API (no Beam here).

``migrate`` applies the versioned schema, ``localdb`` runs a private PostgreSQL for the demo
and the tests, ``writer`` stores rows idempotently (COPY + merge), ``versions`` and
``revisions`` decide which of two deliveries of a bar wins. The pipeline's Beam sinks that use
the writer live in ``pipeline/postgres_sink.py``.
"""
