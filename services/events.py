"""Event shapes (after OpenSearch's User Behavior Insights) and the sink served lists go to."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, get_args

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

logger = logging.getLogger(__name__)

ServingArm = Literal["production", "canary"]
"""The arm a loaded model version serves in a routing."""
Arm = Literal["production", "canary", "interleaved"]
"""The arm of a served list: one model's ranking, or the canary team-draft interleaved with
production (``model_version`` is then the canary's; ``teams`` names each result's model)."""
ARMS: tuple[Arm, ...] = ("production", "canary", "interleaved")

# Every field is bounded so that whatever validates also fits its DuckDB column (INTEGER,
# VARCHAR, lists) and its Arrow type: a record that passes here is never a poison record.
# A constrained ``str`` also refuses lone surrogates, which Arrow cannot encode as UTF-8.
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Name = Annotated[str, StringConstraints(max_length=128)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ProductId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MAX_QUERY_CHARS = 2048
MAX_RESULTS = 1000
MAX_FILTER_DEPTH = 8
MAX_FILTER_BYTES = 8 * 1024


class QueryEvent(BaseModel):
    """A served result list, logged by encoder_server for every search."""

    type: Literal["query"] = "query"
    query_id: Id
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    user_query: Annotated[str, StringConstraints(max_length=MAX_QUERY_CHARS)]
    session_id: Name | None = None
    client_id: Name | None = None
    model_version: Version
    arm: Arm
    mode: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "splade"
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description=f"At most {MAX_FILTER_DEPTH} levels deep and {MAX_FILTER_BYTES} bytes as JSON.",
    )
    page: int = Field(default=1, ge=1, le=10_000)
    offset: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Results before this page: results[i] was served at position offset + i + 1.",
    )
    client_key: str | None = Field(
        default=None,
        max_length=64,
        description="Keyed hash of the shopper's network address, set by the server (never by "
        "the client): caps on any one client's weight rely on it.",
    )
    results: list[ProductId] = Field(
        max_length=MAX_RESULTS, description="Ranked product ids of the served page."
    )
    teams: list[Version] | None = Field(
        default=None,
        max_length=MAX_RESULTS,
        description="Interleaved lists only: the model version that contributed each result.",
    )
    control_version: Version | None = Field(
        default=None, description="Interleaved lists only: the production version compared."
    )

    @field_validator("filters")
    @classmethod
    def _bounded_filters(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_depth(value, MAX_FILTER_DEPTH)
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # NaN, huge ints, non-JSON values from a Python caller
            raise ValueError(f"filters are not plain JSON: {exc}") from None
        if size > MAX_FILTER_BYTES:
            raise ValueError(f"filters take {size} bytes as JSON, more than {MAX_FILTER_BYTES}")
        return value


def _check_depth(value: object, limit: int) -> None:
    """Raise ValueError when ``value`` nests deeper than ``limit`` (iterative: no recursion)
    or holds a number JSON cannot (the parser accepts NaN; RFC 8259 does not)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, float) and not math.isfinite(child):
                raise ValueError("NaN and infinity are not JSON numbers")
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    raise ValueError(f"nested deeper than {limit} levels")
                stack.append((child, depth + 1))


Action = Literal["impression", "click", "add_to_cart", "purchase"]
ACTIONS: tuple[Action, ...] = ("impression", "click", "add_to_cart", "purchase")
MAX_EVENT_BYTES = 64 * 1024
"""Larger messages are dead-lettered as oversized (a served page of 100 ids is ~4 KiB)."""


class InteractionEvent(BaseModel):
    """What a shopper did with a product in a served list (sent by the storefront)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["interaction"] = "interaction"
    event_id: Id = Field(description="Idempotency key: a repeated event_id is stored once.")
    query_id: Id = Field(description="The query_id of the served list this happened on.")
    action_name: Action
    object_id: Id = Field(description="Product id.")
    position: int = Field(ge=1, le=1000, description="1-based rank of the product in the list.")
    session_id: str | None = Field(default=None, max_length=128)
    client_id: str | None = Field(default=None, max_length=128)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model_version: str | None = Field(default=None, max_length=32)
    arm: Arm | None = None


Event = Annotated[QueryEvent | InteractionEvent, Field(discriminator="type")]
_EVENT = TypeAdapter(Event)


RejectReason = Literal[
    "bad_json",
    "oversized",
    "unknown_type",
    "unknown_action",
    "missing_id",
    "invalid_field",
    "unstorable",
    "internal_error",
]
"""Why a record or event was not stored: a closed set, used as a metrics label.

``unstorable``: it validated but its row could not be built or inserted (a bug in the bounds
above, caught per record); ``internal_error``: anything else unexpected while decoding it."""
REJECT_REASONS: tuple[RejectReason, ...] = get_args(RejectReason)


class MalformedEventError(ValueError):
    """An event that cannot be stored; ``code`` is a small closed set (a metrics label)."""

    def __init__(self, code: RejectReason, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _reason(exc: ValidationError) -> MalformedEventError:
    errors = exc.errors()
    first = errors[0]
    if first["type"] in ("json_invalid", "json_type", "dict_type"):
        return MalformedEventError("bad_json", f"not a JSON object: {first['msg']}")
    field = ".".join(str(p) for p in first["loc"])
    text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in errors)
    if any(e["loc"][-1:] == ("action_name",) for e in errors):
        return MalformedEventError("unknown_action", text)
    if any(e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found" for e in errors):
        return MalformedEventError("unknown_type", text)
    if any(e["type"] == "missing" and str(e["loc"][-1]).endswith("_id") for e in errors):
        return MalformedEventError("missing_id", text)
    return MalformedEventError("invalid_field", text if field else str(exc))


def validate_event(data: object) -> QueryEvent | InteractionEvent:
    """Validate one decoded event (a dict); raises :class:`MalformedEventError`."""
    try:
        return _EVENT.validate_python(data)
    except ValidationError as exc:
        raise _reason(exc) from None


def parse_event(raw: bytes) -> QueryEvent | InteractionEvent:
    """Decode and validate one Kafka message value; raises :class:`MalformedEventError`.

    pydantic-core parses the bytes itself (strict RFC 8259 JSON, one pass, no intermediate
    dict): invalid UTF-8, lone surrogates and nesting deeper than its recursion limit are
    refused as ``bad_json`` (``json.loads`` raised RecursionError on deep nesting, which
    stopped the partition).
    """
    if len(raw) > MAX_EVENT_BYTES:
        raise MalformedEventError("oversized", f"{len(raw)} bytes > limit {MAX_EVENT_BYTES}")
    try:
        return _EVENT.validate_json(raw)
    except ValidationError as exc:
        raise _reason(exc) from None


def event_key(event: QueryEvent | InteractionEvent) -> bytes:
    """Kafka key: the query_id, so a list and its interactions share a partition."""
    return event.query_id.encode()


AnyEvent = QueryEvent | InteractionEvent


@dataclass(slots=True)
class PublishOutcome:
    """What became of a batch handed to :meth:`EventSink.publish`."""

    accepted: list[str] = field(default_factory=list)
    """Acknowledged by the event bus (acks=all): durable."""
    pending: list[str] = field(default_factory=list)
    """Queued but not acknowledged within the timeout; kept and retried, not lost."""
    refused: list[str] = field(default_factory=list)
    """Not accepted (the spool is full, the sink is closing or a spool write failed); the
    sender should retry later."""


def event_id(event: AnyEvent) -> str:
    """The idempotency key of an event (query events are keyed by their query_id)."""
    return event.event_id if isinstance(event, InteractionEvent) else event.query_id


class EventSink(Protocol):
    """Where served lists and interactions go. Never blocks or fails a search."""

    def emit(self, event: AnyEvent) -> bool:
        """Queue without waiting; False when the backlog is full and the event was dropped."""

    def publish(self, events: Sequence[AnyEvent], timeout_s: float) -> PublishOutcome:
        """Queue events and wait up to ``timeout_s`` for the bus to acknowledge them."""

    def backlog(self) -> int:
        """Events queued or in flight, not yet acknowledged."""

    def close(self) -> None:
        """Flush what can be flushed and release connections."""


class MemorySink:
    """Keeps events in memory (tests, benchmarks); acknowledges everything at once."""

    def __init__(self) -> None:
        self.events: list[AnyEvent] = []

    def emit(self, event: AnyEvent) -> bool:
        self.events.append(event)
        return True

    def publish(self, events: Sequence[AnyEvent], timeout_s: float) -> PublishOutcome:
        self.events.extend(events)
        return PublishOutcome(accepted=[event_id(e) for e in events])

    def backlog(self) -> int:
        return 0

    def close(self) -> None:
        return None
