"""feedback_ingest throughput: Kafka → DuckDB, stored events per second, and the cost of the
derived-table rebuild as history grows.

1. Starts the embedded tansu broker, produces ``--lists`` served lists with 10 impressions and
   1 click each (20,000 lists: 240,000 events), then runs the real ``Ingestor`` (the code
   ``flywheel ingest`` runs) against a fresh DuckDB file until every record is stored, and
   reports stored events/s (the broker runs on the same cores).
2. Generates 1M and 10M events of the same shape straight into DuckDB and times
   ``feedback_ingest.store.derived.refresh_derived``: the first refresh (every list is new);
   then, after ``--increment`` more lists arrive, the incremental refresh the ingest runs every
   30 s (only the new lists are read; training tables left for the snapshot), the training
   stage a snapshot adds, and deriving every list again (``full=True``: what every refresh
   cost before the derived tables became incremental).

Run: make bench-ingest   (or: python -m benchmarks.ingest [--quick] [--profile])
Figures are printed and written to reports/ingest-benchmark.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from feedback_ingest.consumer import Ingestor
from feedback_ingest.store import EventStore, refresh_derived
from services.kafka.broker import EmbeddedBroker, ensure_topics
from services.kafka.config import KafkaSettings

OUT = Path("reports/ingest-benchmark.json")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def events_of(n_lists: int) -> list[tuple[bytes, bytes]]:
    """(key, value) records: per list one query event, 10 impressions and 1 click."""
    records: list[tuple[bytes, bytes]] = []
    for i in range(n_lists):
        qid = f"q{i:08d}"
        results = [f"p{(i * 7 + k) % 50_000}" for k in range(10)]
        ts = (T0 + timedelta(seconds=i)).isoformat()
        query = {
            "type": "query",
            "query_id": qid,
            "timestamp": ts,
            "user_query": f"query {i % 5_000}",
            "session_id": f"s{i % 3_000}",
            "model_version": "v1",
            "arm": "production",
            "mode": "hybrid",
            "results": results,
        }
        records.append((qid.encode(), orjson.dumps(query)))
        for k, product in enumerate(results):
            for action in ("impression", "click") if k == i % 10 else ("impression",):
                event = {
                    "type": "interaction",
                    "event_id": f"{qid}-{action}-{k}",
                    "query_id": qid,
                    "action_name": action,
                    "object_id": product,
                    "position": k + 1,
                    "session_id": f"s{i % 3_000}",
                    "timestamp": ts,
                }
                records.append((qid.encode(), orjson.dumps(event)))
    return records


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    started = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def ingest(settings: KafkaSettings, store: EventStore, want: int, profile: bool) -> dict[str, Any]:
    ingestor = Ingestor(settings, store)
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    ingestor.start()
    records = batches = 0
    if profiler:
        profiler.enable()
    try:
        while records < want:
            stats = ingestor.poll_batch(500)
            records += stats.records
            batches += 1 if stats.records else 0
    finally:
        if profiler:
            profiler.disable()
        ingestor.close()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return {
        "records": records,
        "seconds": round(elapsed, 2),
        "events_per_s": round(records / elapsed),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_event": round(cpu / max(records, 1) * 1e6, 1),
        "events_per_cpu_s": round(records / cpu),
        "batches": batches,
        "mean_batch": round(records / max(batches, 1)),
    }


def stored_count(store: EventStore) -> int:
    rows = store.con.execute(
        "SELECT (SELECT count(*) FROM queries) + (SELECT count(*) FROM interactions)"
    ).fetchall()
    return int(rows[0][0])


def throughput(n_lists: int, profile: bool) -> dict[str, Any]:
    records = events_of(n_lists)
    with EmbeddedBroker().start() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
        ensure_topics(broker.bootstrap_servers, settings.topics())
        produce_s = produce(broker.bootstrap_servers, settings.topic, records)
        with EventStore(Path(tmp) / "events.duckdb") as store:
            figures = ingest(settings, store, len(records), profile)
            figures["stored"] = stored_count(store)
    figures["produce_s"] = round(produce_s, 2)
    figures["events"] = len(records)
    figures["lists"] = n_lists
    return figures


GENERATE = """
INSERT INTO queries (query_id, ts, user_query, norm_query, session_id, model_version, arm,
                     mode, page, filters, results, source_partition, source_offset)
SELECT 'q' || i, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i),
       'query ' || (i % 5000), 'query ' || (i % 5000), 's' || (i % 3000), 'v1', 'production',
       'hybrid', 1, '{}', [ 'p' || ((i * 7 + k) % 50000) for k in range(10) ], 0, i
FROM range($first, $last) t(i);
INSERT INTO interactions (event_id, query_id, action, product_id, position, session_id, ts,
                          source_partition, source_offset)
SELECT 'q' || i || '-' || a || '-' || k, 'q' || i, a, 'p' || ((i * 7 + k) % 50000), k + 1,
       's' || (i % 3000), TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i + 1), 0, i
FROM range($first, $last) t(i), range(10) r(k), (VALUES ('impression'), ('click')) v(a)
WHERE a = 'impression' OR k = i % 10;
"""


def generate(store: EventStore, first: int, last: int) -> None:
    """Lists ``first``..``last - 1`` of the generated shape, straight into DuckDB."""
    store.con.execute(GENERATE.replace("$first", str(first)).replace("$last", str(last)))


def timed_refresh(
    store: EventStore, *, full: bool = False, training: bool = True
) -> tuple[float, int]:
    """Seconds one refresh took, and how many lists it derived again."""
    started = time.perf_counter()
    report = refresh_derived(store, now=T0 + timedelta(days=30), full=full, training=training)
    return time.perf_counter() - started, report.lists_derived


def derived_cost(events: int, increment: int) -> dict[str, Any]:
    lists = events // 12
    with (
        tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp,
        EventStore(Path(tmp) / "events.duckdb") as store,
    ):
        started = time.perf_counter()
        generate(store, 0, lists)
        generated = time.perf_counter() - started
        stored = stored_count(store)
        first_s, _ = timed_refresh(store)
        generate(store, lists, lists + increment)
        incremental_s, derived = timed_refresh(store, training=False)
        training_s, _ = timed_refresh(store)
        full_s, _ = timed_refresh(store, full=True)
        size = (Path(tmp) / "events.duckdb").stat().st_size
    return {
        "events": stored,
        "generate_s": round(generated, 1),
        "refresh_derived_s": round(first_s, 2),
        "increment_lists": increment,
        "incremental_s": round(incremental_s, 3),
        "incremental_lists_derived": derived,
        "training_s": round(training_s, 2),
        "full_s": round(full_s, 2),
        "store_mb": round(size / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=20_000, help="served lists to produce")
    parser.add_argument(
        "--derived", default="1000000,10000000", help="event counts for the rebuild timing"
    )
    parser.add_argument(
        "--increment", type=int, default=1_000, help="lists arriving between two refreshes"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 lists, 100k events")
    parser.add_argument("--profile", action="store_true", help="cProfile the ingest loop")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.lists, args.derived = 1_000, "100000"
    cores = os.cpu_count()
    print(f"cores: {cores} (shared with other processes: figures are indicative)")
    figures: dict[str, Any] = {"cores": cores, "command": "python -m benchmarks.ingest"}
    figures["ingest"] = result = throughput(args.lists, args.profile)
    print(
        f"ingest: {result['stored']:,} of {result['events']:,} events stored in "
        f"{result['seconds']} s = {result['events_per_s']:,} events/s "
        f"({result['batches']} batches, mean {result['mean_batch']} records; "
        f"producing took {result['produce_s']} s)\n"
        f"ingest process CPU: {result['cpu_s']} s = {result['cpu_us_per_event']} us/event = "
        f"{result['events_per_cpu_s']:,} events per CPU-second (less sensitive to shared cores)"
    )
    figures["derived"] = []
    for events in (int(n) for n in args.derived.split(",") if n):
        cost = derived_cost(events, args.increment)
        figures["derived"].append(cost)
        print(
            f"refresh_derived over {cost['events']:,} events: first {cost['refresh_derived_s']} s; "
            f"after {cost['increment_lists']:,} more lists: incremental {cost['incremental_s']} s "
            f"({cost['incremental_lists_derived']:,} lists derived; the training stage a "
            f"snapshot adds: {cost['training_s']} s) vs every list again {cost['full_s']} s, "
            f"on {cores} cores (store {cost['store_mb']} MB; generated in {cost['generate_s']} s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
