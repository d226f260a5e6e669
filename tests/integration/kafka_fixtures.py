"""Kafka fixtures: an embedded tansu broker per session and a fresh topic per test.

Import them where they are used (a conftest or a test module)::

    from tests.integration.kafka_fixtures import broker, kafka_settings, kafka_topic
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    """Default settings; the broker address comes from the ``broker`` fixture."""
    return KafkaSettings(embedded_port=0)


@pytest.fixture(scope="session")
def broker(kafka_settings: KafkaSettings) -> Iterator[EmbeddedBroker]:
    """A tansu broker on a free port with the events topic (3 partitions) and the DLQ."""
    with EmbeddedBroker().start() as running:
        ensure_topics(running.bootstrap_servers, kafka_settings.topics())
        yield running


@pytest.fixture
def kafka_topic(broker: EmbeddedBroker) -> str:
    """A new, empty 3-partition topic on the session broker."""
    name = f"test.{uuid.uuid4().hex[:12]}"
    ensure_topics(broker.bootstrap_servers, {name: 3})
    return name
