"""retrainer: from a feedback snapshot to a gated, published model version, and the canary
controller that decides it online.

``pipeline`` runs one retraining (snapshot → pairs and hard negatives → fine-tune → register →
index → gate → publish) with ``data``, ``negatives``, ``training``, ``gate``, ``guard`` and
``report``; ``bootstrap`` builds training triples from labelled sets (``flywheel train`` and
the optional labelled mix); ``canary`` promotes or rolls back the canary from online metrics.
It imports only ``services`` and reads feedback only from the ingest's Parquet snapshots.
"""
