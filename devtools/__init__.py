"""Developer tools (simulator, local Kafka, demo); never imported by the service core."""
