"""The event bus's client settings: TLS and SASL reach every producer, consumer and admin."""

from __future__ import annotations

import pytest

from services.errors import ConfigError
from services.kafka.config import KafkaSettings


def test_plaintext_adds_nothing() -> None:
    kafka = KafkaSettings()
    assert kafka.security_config() == {}
    assert "security_protocol" not in kafka.producer_config("b:9092")


def test_clients_never_create_topics() -> None:
    # Only ensure_topics makes topics, with the configured partitions; a metadata refresh while
    # a topic is recreated once left a fourth partition from the broker's defaults.
    kafka = KafkaSettings()
    for config in (kafka.producer_config("b:9092"), kafka.consumer_config("b:9092")):
        assert config["allow_auto_create_topics"] is False


def test_sasl_ssl_reaches_producer_and_consumer() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="ingest",
        sasl_password="pw",
        ssl_cafile="/ca.crt",
    )
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": "pw",
        "ssl_cafile": "/ca.crt",
    }
    assert kafka.security_config() == expected
    for config in (kafka.producer_config("b:9093"), kafka.consumer_config("b:9093")):
        assert expected.items() <= config.items()
    assert "pw" not in repr(kafka)  # the password is a secret in logs and dumps


def test_sasl_without_credentials_is_refused_when_a_client_is_made() -> None:
    # Loading is fine: the retrainer shares the configuration but never talks to Kafka.
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(ConfigError, match="FLYWHEEL_KAFKA__SASL_USERNAME"):
        kafka.producer_config("b:9093")


def test_ssl_only_sends_the_ca_but_no_sasl() -> None:
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile="/ca.crt")
    assert kafka.security_config() == {"security_protocol": "SSL", "ssl_cafile": "/ca.crt"}
