"""Settings of the event bus: topics, producer and consumer (``FLYWHEEL_KAFKA__...``).

The defaults are chosen from measurements against the embedded tansu broker with
kafka-python 3.0.12 (see ``tests/integration/test_kafka_broker.py``):

* ``enable_idempotence`` is off: after tansu restarts (memory storage) an idempotent producer
  fails for good (``UnknownProducerIdError``, then ``InitProducerId`` answers ``UnknownError``
  on every retry), while a plain producer with one request in flight recovers at once.
  Duplicates from retries are harmless: the ingest ignores a repeated ``event_id``.
* ``bootstrap_timeout_ms`` and ``max_block_ms`` are small: kafka-python 3 blocks in the
  ``KafkaProducer`` constructor until it reaches a broker (30 s by default) and in ``send()``
  while it has no metadata for the topic. A down broker must never stall a search.
* kafka-python 3 has no ``buffer_memory``; the spool's ``max_events`` and ``max_bytes`` bound
  what encoder_server holds (on disk and in memory) until Kafka acknowledges it.
* ``session_timeout_ms`` decides how long a group join takes on tansu (about half of it);
  the ingest uses manual assignment, so this matters only for group mode.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from services.errors import ConfigError


class ProducerSettings(BaseModel):
    """How encoder_server (queries) and /events (interactions) publish."""

    acks: Literal["all", 0, 1] = "all"
    enable_idempotence: bool = Field(
        default=False,
        description="Off by default: an idempotent producer never recovers after an embedded "
        "broker restart. Safe to turn on against a real Kafka cluster.",
    )
    retries: int = Field(default=10, ge=0)
    max_in_flight_requests_per_connection: int = Field(
        default=1, ge=1, le=5, description="1 keeps per-partition order through retries."
    )
    linger_ms: int = Field(default=5, ge=0)
    batch_size: int = Field(default=16_384, ge=0)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    request_timeout_ms: int = Field(default=3_000, ge=100)
    delivery_timeout_ms: int = Field(
        default=10_000, ge=100, description="Upper bound from send() to success or failure."
    )
    max_block_ms: int = Field(
        default=200, ge=0, description="Longest send() may block waiting for topic metadata."
    )
    bootstrap_timeout_ms: int = Field(
        default=2_000, ge=100, description="Longest the constructor waits for a broker."
    )
    max_request_size: int = Field(default=1_048_576, ge=1_024)

    @field_validator("acks", mode="before")
    @classmethod
    def _acks_from_env(cls, value: object) -> object:
        return int(value) if value in ("0", "1") else value

    @model_validator(mode="after")
    def _check_timeouts(self) -> ProducerSettings:
        if self.delivery_timeout_ms < self.request_timeout_ms + self.linger_ms:
            raise ValueError(
                "kafka.producer.delivery_timeout_ms must be at least request_timeout_ms + "
                "linger_ms; raise delivery_timeout_ms or lower request_timeout_ms."
            )
        return self


class SpoolSettings(BaseModel):
    """encoder_server's durable spool: events kept on disk until Kafka acknowledges them."""

    max_events: int = Field(
        default=500_000,
        ge=1,
        description="Events not yet acknowledged by Kafka beyond which new ones are refused "
        "(POST /events answers 503 with Retry-After; served lists are counted and dropped).",
    )
    max_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024,
        description="The same bound in bytes of event JSON (held on disk and in memory).",
    )
    segment_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Size at which the spool starts a new file; a file is deleted once Kafka "
        "acknowledged all of it.",
    )
    sync_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest POST /events waits for its events' fsync."
    )


class ConsumerSettings(BaseModel):
    """How feedback_ingest reads (manual partition assignment, offsets kept in DuckDB)."""

    group_id: str = Field(
        default="flywheel-ingest",
        description="Used only in group mode; the ingest assigns partitions itself.",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a partition with no stored offset starts."
    )
    max_poll_records: int = Field(
        default=5_000,
        ge=1,
        description="Records per poll batch, i.e. per DuckDB transaction (benchmarks/ingest.py).",
    )
    check_crcs: bool = Field(
        default=False,
        description="Re-check each record batch's CRC-32C in the consumer. kafka-python does "
        "it in pure Python (about half the ingest's time); the broker checked it on produce "
        "and TCP checks the transfer.",
    )
    max_poll_interval_ms: int = Field(default=6_000, ge=1_000)
    session_timeout_ms: int = Field(
        default=6_000, ge=1_000, description="A group join on tansu takes about half of this."
    )
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    fetch_max_wait_ms: int = Field(default=500, ge=0)
    fetch_max_bytes: int = Field(default=8 * 1_048_576, ge=1_024)
    max_partition_fetch_bytes: int = Field(default=1_048_576, ge=1_024)
    request_timeout_ms: int = Field(default=5_000, ge=100)
    bootstrap_timeout_ms: int = Field(default=5_000, ge=100)
    max_message_bytes: int = Field(
        default=65_536,
        ge=256,
        description="A record value larger than this is rejected to the dead-letter topic.",
    )

    @model_validator(mode="after")
    def _check_timeouts(self) -> ConsumerSettings:
        if not self.fetch_max_wait_ms < self.request_timeout_ms:
            raise ValueError(
                "kafka.consumer.fetch_max_wait_ms must be below request_timeout_ms "
                "(kafka-python refuses otherwise); lower fetch_max_wait_ms."
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                "kafka.consumer.heartbeat_interval_ms must be below session_timeout_ms; "
                "use about a third of it."
            )
        return self


class KafkaSettings(BaseModel):
    """The event bus: where it is, its topics, and how clients talk to it."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="Comma-separated host:port list of a Kafka cluster; unset means the "
        "embedded tansu broker (memory storage) on embedded_host:embedded_port.",
    )
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(default=9092, ge=0, le=65535, description="0 picks a free port.")
    client_id: str = "flywheel"
    topic: str = "flywheel.events"
    dlq_topic: str = "flywheel.events.dlq"
    partitions: int = Field(default=3, ge=1)
    dlq_partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="SASL_SSL for a cluster with TLS and SCRAM users (the prod overlay).",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(
        default=None, description="PEM file of the CA that signed the brokers' certificates."
    )
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)

    def security_config(self) -> dict[str, Any]:
        """kafka-python's TLS and SASL arguments (empty on a plaintext bus), for every producer,
        consumer and admin client.

        Checked here, when a client is made, not when settings load: processes that share the
        configuration but never talk to Kafka (the retrainer, the canary controller) get no
        credentials and must still start.

        Raises:
            ConfigError: a SASL protocol without mechanism, user name or password.
        """
        if self.security_protocol == "PLAINTEXT":
            return {}
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ConfigError(
                    f"kafka.security_protocol {self.security_protocol} needs sasl_mechanism, "
                    "sasl_username and sasl_password: set FLYWHEEL_KAFKA__SASL_MECHANISM, "
                    "FLYWHEEL_KAFKA__SASL_USERNAME and FLYWHEEL_KAFKA__SASL_PASSWORD."
                )
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                # kafka-python takes the SCRAM credentials under the PLAIN names too
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.ssl_cafile and self.security_protocol.endswith("SSL"):
            config["ssl_cafile"] = self.ssl_cafile
        return config

    def bootstrap(self) -> str:
        """The bootstrap list clients use: the configured cluster or the embedded broker."""
        if self.bootstrap_servers:
            return self.bootstrap_servers
        if self.embedded_port == 0:
            raise ConfigError(
                "kafka.embedded_port is 0, so the embedded broker's address is known only once "
                "it runs; pass EmbeddedBroker.bootstrap_servers, or set FLYWHEEL_KAFKA__"
                "EMBEDDED_PORT or FLYWHEEL_KAFKA__BOOTSTRAP_SERVERS."
            )
        return f"{self.embedded_host}:{self.embedded_port}"

    def topics(self) -> dict[str, int]:
        """Topic name → partition count, for ``ensure_topics``."""
        return {self.topic: self.partitions, self.dlq_topic: self.dlq_partitions}

    def producer_config(self, bootstrap: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``kafka.KafkaProducer``."""
        return {**self.producer.model_dump(), **self._common(bootstrap, "producer")}

    def consumer_config(self, bootstrap: str | None = None) -> dict[str, Any]:
        """Keyword arguments for a manually assigned ``kafka.KafkaConsumer`` (no group)."""
        config = self.consumer.model_dump(exclude={"group_id", "max_message_bytes"})
        return {**config, **self._common(bootstrap, "ingest"), "enable_auto_commit": False}

    def _common(self, bootstrap: str | None, role: str) -> dict[str, Any]:
        servers = bootstrap or self.bootstrap()
        return {
            "bootstrap_servers": [s.strip() for s in servers.split(",") if s.strip()],
            "client_id": f"{self.client_id}-{role}",
            # Topics are made only by ensure_topics, with the configured partitions: a client's
            # metadata refresh while a topic is missing (deleted, a broker restarting) must not
            # create it with the broker's defaults.
            "allow_auto_create_topics": False,
            **self.security_config(),
        }
