"""Malformed and random Kafka record values for the chaos benchmark's fuzz run.

Every generated value is invalid by construction (each generator breaks one rule the ingest
must enforce), so the figure to reach is that 100% of them end up in the dead letters with a
reason, and none stops the ingest.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

Gen = Callable[[random.Random], bytes]


def _valid(rng: random.Random) -> dict[str, object]:
    if rng.random() < 0.5:
        return {
            "type": "query",
            "query_id": f"fz{rng.getrandbits(48):x}",
            "user_query": "fuzz",
            "model_version": "v1",
            "arm": "production",
            "results": [f"p{rng.randrange(99)}" for _ in range(rng.randrange(1, 10))],
        }
    return {
        "type": "interaction",
        "event_id": f"fz{rng.getrandbits(48):x}",
        "query_id": "fz",
        "action_name": "click",
        "object_id": "p1",
        "position": rng.randrange(1, 50),
    }


def _dump(value: object) -> bytes:
    return json.dumps(value).encode()


def random_bytes(rng: random.Random) -> bytes:
    return b"\xff" + rng.randbytes(rng.randrange(0, 200))  # never valid UTF-8 JSON


def truncated(rng: random.Random) -> bytes:
    raw = _dump(_valid(rng))
    return raw[: rng.randrange(1, len(raw) - 1)]


def not_an_object(rng: random.Random) -> bytes:
    return _dump(rng.choice([[], [1, 2], "event", 42, None, True, 3.5]))


def deep(rng: random.Random) -> bytes:
    depth = rng.randrange(300, 5_000)
    return b'{"type": "interaction", "x": ' + b"[" * depth + b"]" * depth + b"}"


def wrong_type(rng: random.Random) -> bytes:
    event = _valid(rng)
    key = rng.choice([k for k in event if k != "type"])
    event[key] = rng.choice([[1], {"a": 1}, 1.5, True]) if key != "position" else "first"
    return _dump(event)


def missing(rng: random.Random) -> bytes:
    event = _valid(rng)
    required = ["query_id", "model_version", "arm", "results", "user_query"]
    if event["type"] == "interaction":
        required = ["event_id", "query_id", "action_name", "object_id", "position"]
    del event[rng.choice(required)]
    return _dump(event)


def out_of_range(rng: random.Random) -> bytes:
    event = _valid(rng)
    if event["type"] == "query":
        event[rng.choice(["page", "offset"])] = rng.choice([0 - rng.randrange(1, 9), 2**40])
    else:
        event["position"] = rng.choice([0, -1, 10_001, 2**40, 2**70])
    return _dump(event)


def too_long(rng: random.Random) -> bytes:
    event = _valid(rng)
    key = (
        "query_id"
        if rng.random() < 0.5
        else ("user_query" if event["type"] == "query" else "object_id")
    )
    event[key] = "x" * rng.randrange(3_000, 20_000)
    return _dump(event)


def surrogate(rng: random.Random) -> bytes:
    event = _valid(rng)
    key = "query_id"
    return _dump(event).replace(f'"{event[key]}"'.encode(), b'"\\ud800x"', 1)


def nan(rng: random.Random) -> bytes:
    event = _valid(rng)
    event["type"] = "query"
    event.update(user_query="q", model_version="v1", arm="production", results=["p"])
    event["filters"] = {"price": [rng.choice(["NaN", "Infinity", "-Infinity"])]}
    return (
        json.dumps(event)
        .replace('"NaN"', "NaN")
        .replace('"Infinity"', "Infinity")
        .replace('"-Infinity"', "-Infinity")
        .encode()
    )


def unknown(rng: random.Random) -> bytes:
    event = _valid(rng)
    if rng.random() < 0.5:
        event["type"] = rng.choice(["pageview", "", "QUERY", "interactions"])
    else:
        event.update(type="interaction", action_name=rng.choice(["hover", "Click", "", "buy"]))
        event.setdefault("event_id", "fz-e")
        event.setdefault("object_id", "p")
        event.setdefault("position", 1)
    return _dump(event)


def oversized(rng: random.Random) -> bytes:
    event = _valid(rng)
    event["pad"] = "x" * rng.randrange(66_000, 70_000)
    return _dump(event)


def empty(rng: random.Random) -> bytes:
    return rng.choice([b"", b" ", b"{}", b"\n", b"null"])


GENERATORS: tuple[Gen, ...] = (
    random_bytes,
    truncated,
    not_an_object,
    deep,
    wrong_type,
    missing,
    out_of_range,
    too_long,
    surrogate,
    nan,
    unknown,
    oversized,
    empty,
)


def fuzz_records(n: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """``n`` (generator name, value) pairs, cycling through the generators; an oversized
    record (about 68 KB) comes once every ten cycles, to keep the run's volume modest."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        gen = GENERATORS[i % len(GENERATORS)]
        if gen is oversized and (i // len(GENERATORS)) % 10:
            gen = GENERATORS[(i + 1) % len(GENERATORS)]
        records.append((gen.__name__, gen(rng)))
    return records
