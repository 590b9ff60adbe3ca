"""The live path in one command (``python -m live_demo``): starts a bus (the Pub/Sub emulator or a
local Kafka broker), the streaming pipeline, the API and the dashboard as child processes.
Process spawning lives here, outside the shared ``alphastream`` package the services import."""
