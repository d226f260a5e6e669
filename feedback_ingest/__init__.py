"""The Kafka consumer that writes events to DuckDB exactly once (built with the event-pipeline
issue; this package holds nothing yet)."""
