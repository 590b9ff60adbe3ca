"""alphastream: shared records, intervals and settings (no Beam, no I/O)."""
