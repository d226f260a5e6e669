"""feedback_ingest: shopper events from Kafka into DuckDB, exactly once, and what is derived
from them.

``consumer`` (Kafka → DuckDB, one transaction per poll batch with its offsets), ``store``
(the DuckDB schema, migrations, derived tables: judgments, propensities, training pairs, online
metrics; Parquet snapshots) and ``service`` (the long-running ``flywheel ingest`` process).
It imports only ``services``; the retrainer reads its Parquet snapshots, never its DuckDB file.
"""
