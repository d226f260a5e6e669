"""Poison records: whatever one record holds, it costs only itself, never its batch."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from feedback_ingest.store import EventStore, Sourced
from services.events import (
    MAX_FILTER_DEPTH,
    InteractionEvent,
    MalformedEventError,
    QueryEvent,
    parse_event,
)
from tests.feedback_ingest.builders import act, query

TOPIC = "flywheel.events"


def nested(depth: int) -> bytes:
    return b'{"type": "interaction", "x": ' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_malformed_not_a_recursion_error() -> None:
    raw = nested(30_000)  # about 60 KB: json.loads raised RecursionError here
    assert len(raw) < 64 * 1024
    with pytest.raises(MalformedEventError) as caught:
        parse_event(raw)
    assert caught.value.code == "bad_json"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("page", 2**40),
        ("user_query", "x" * 5_000),
        ("query_id", ""),
        ("query_id", "q" * 200),
        ("model_version", "v" * 100),
        ("results", ["p"] * 1_001),
        ("results", [""]),
        ("user_query", "\ud800"),  # a lone surrogate: Arrow cannot encode it
        ("filters", {"a": json.loads("[" * MAX_FILTER_DEPTH + "]" * MAX_FILTER_DEPTH)}),
        ("filters", {"a": "x" * 10_000}),
        ("mode", "m" * 100),
    ],
)
def test_query_events_are_bounded_like_their_columns(field: str, value: object) -> None:
    good = query("q1", "drill", ["p1"]).model_dump()
    QueryEvent.model_validate(good)
    with pytest.raises(ValidationError):
        QueryEvent.model_validate({**good, field: value})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"query","query_id":"q","user_query":"\\ud800","model_version":"v1",'
        b'"arm":"production","results":[]}',
        b'{"type":"query","query_id":"q","user_query":"x","model_version":"v1",'
        b'"arm":"production","results":[],"filters":{"a":NaN}}',
        b'{"type":"interaction","event_id":"e","query_id":"q","action_name":"click",'
        b'"object_id":"p","position":1,"session_id":"\\udfff"}',
        b"\xff\xfe not utf-8",
    ],
)
def test_records_arrow_cannot_hold_are_refused_when_parsed(raw: bytes) -> None:
    with pytest.raises(MalformedEventError):
        parse_event(raw)


def _counts(store: EventStore) -> tuple[int, int, list[tuple[int, str]]]:
    q = store.con.execute("SELECT count(*) FROM queries").fetchone()
    i = store.con.execute("SELECT count(*) FROM interactions").fetchone()
    letters = store.con.execute(
        "SELECT source_offset, reason_code FROM dead_letters ORDER BY source_offset"
    ).fetchall()
    assert q is not None and i is not None
    return int(q[0]), int(i[0]), [(int(o), str(c)) for o, c in letters]


def poison_batch() -> tuple[list[Sourced[QueryEvent]], list[Sourced[InteractionEvent]]]:
    """Events built without validation (as a bug upstream of the store would): an integer
    beyond INTEGER, a lone surrogate, and values the table's CHECK constraints refuse."""
    good_q = query("q1", "drill", ["p1", "p2"])
    huge_page = good_q.model_copy(update={"query_id": "q2", "page": 2**40})
    surrogate = good_q.model_copy(update={"query_id": "q3", "user_query": "\ud800"})
    good_i = act("q1", "click", "p1", 1)
    hover = good_i.model_copy(update={"event_id": "x1", "action_name": "hover"})
    position0 = good_i.model_copy(update={"event_id": "x2", "position": 0})
    queries = [
        Sourced(e, 0, n, TOPIC, b"raw") for n, e in enumerate([good_q, huge_page, surrogate])
    ]
    interactions = [
        Sourced(e, 0, 3 + n, TOPIC, b"raw") for n, e in enumerate([good_i, hover, position0])
    ]
    return queries, interactions


def test_a_poison_record_inside_a_good_batch_costs_only_itself(store: EventStore) -> None:
    queries, interactions = poison_batch()
    result = store.write_batch(queries, interactions, offsets={(TOPIC, 0): 6})
    assert (result.inserted, result.duplicates) == (2, 0)
    assert sorted(d.offset or 0 for d in result.refused) == [1, 2, 4, 5]
    assert {d.reason_code for d in result.refused} == {"unstorable"}
    assert all(d.reason and d.raw == b"raw" for d in result.refused)
    assert _counts(store) == (1, 1, [(n, "unstorable") for n in (1, 2, 4, 5)])
    assert store.stored_offsets(TOPIC) == {0: 6}
    # Re-delivered after a crash: the good ones are stored once, the letters once.
    again = store.write_batch(queries, interactions, offsets={(TOPIC, 0): 6})
    assert (again.inserted, again.duplicates, again.dead_letters) == (0, 2, 0)
    assert _counts(store)[:2] == (1, 1)
