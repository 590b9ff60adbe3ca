"""Where ticks go: Pub/Sub (the default), Kafka, or stdout (JSON lines, for a quick look)."""
