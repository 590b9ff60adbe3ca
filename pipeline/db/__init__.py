"""The PostgreSQL / TimescaleDB store: migrations, the embedded local database and Beam sinks.

``migrate`` applies the versioned schema, ``localdb`` runs a private PostgreSQL for the demo
and the tests, ``sink`` writes bars, ticks and dead letters from a pipeline.
"""
