"""The live path's first hop: market feeds -> normalised Ticks -> Pub/Sub (or Kafka).

Run it as ``python -m ingestion --source NAME ...`` (see ``--help``). Connectors under
``ingestion.connectors`` turn each feed into ``alphastream.records.Tick``; sinks under
``ingestion.sinks`` publish them in the wire format of ``alphastream.wire``, which the Beam
streaming pipeline parses. Nothing here imports Beam.
"""
