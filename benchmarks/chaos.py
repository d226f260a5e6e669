"""Chaos benchmark: faults, bad input and load against real broker, ingest and server processes.

Shoppers search and send impressions and clicks over HTTP the whole time, a prober calls
/healthz every 250 ms, and the benchmark, in turn:

1. SIGKILLs the ingest at random moments (20 times) while events flow;
2. SIGKILLs the search server with events in flight (5 times) and restarts it (the spool);
3. produces ≥ 10,000 malformed and random records straight into the events topic (fuzz);
4. cuts Kafka off for 60 s under search load (a proxy between every client and the broker),
   after a baseline of the same length;
5. restarts the broker (5 times). The embedded tansu broker keeps nothing across a restart,
   so the figure here is that every loss is detected and reported (offset gaps, metric).

Then it drains everything, stops the ingest and compares what the server accepted with what
DuckDB holds. Figures are printed and written to reports/chaos.json.

Run: make bench-chaos   (or: python -m benchmarks.chaos [--quick])
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from benchmarks.chaos_fuzz import fuzz_records
from benchmarks.chaos_rig import Prober, Rig, Shoppers
from services.indexing import bootstrap_home
from services.kafka.config import KafkaSettings
from services.settings import Settings
from services.synthetic import generate_catalog

OUT = Path("reports/chaos.json")


@dataclass(frozen=True)
class Plan:
    ingest_kills: int = 20
    server_restarts: int = 5
    broker_restarts: int = 5
    fuzz: int = 10_000
    outage_s: float = 60.0
    kill_gap_s: tuple[float, float] = (0.5, 4.0)


LAG = "flywheel_consumer_lag_records"
LOSS_COUNTERS = ("flywheel_ingest_offset_gaps_total", "flywheel_ingest_records_lost_total")

QUICK = Plan(ingest_kills=3, server_restarts=1, broker_restarts=1, fuzz=500, outage_s=10.0)


def make_home(home: Path) -> None:
    bootstrap_home(Settings(home=home), generate_catalog(400, seed=3), model="bundled")


def samples(text: str, *names: str) -> list[Sample]:
    """The samples called one of ``names`` (``_total`` included for a counter) in Prometheus
    text, in exposition order.

    Raises:
        ValueError: ``text`` is not the Prometheus text format.
    """
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in names
    ]


def sample_key(sample: Sample) -> str:
    """How the exposition names the sample: ``name{label="value",...}``."""
    labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
    return f"{sample.name}{{{labels}}}" if labels else sample.name


def p99(values: list[float]) -> float | None:
    if len(values) < 20:
        return None
    return statistics.quantiles(values, n=100)[98] * 1000


def wait_drained(rig: Rig, timeout_s: float = 300) -> bool:
    """Until the server's spool is empty and the ingest has no lag."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rig.ingest_alive()
        try:
            backlog = httpx.get(f"{rig.url}/readyz", timeout=5).json()["event_backlog"]
            metrics = httpx.get(f"http://127.0.0.1:{rig.ingest_metrics_port}/metrics", timeout=5)
            # Per partition; none yet means the ingest has not been assigned its partitions.
            lag = [s.value for s in samples(metrics.text, LAG) if s.labels]
        except (httpx.TransportError, KeyError, ValueError):
            time.sleep(1)
            continue
        if backlog == 0 and lag and sum(lag) == 0:
            return True
        time.sleep(1)
    return False


def kill_ingest_repeatedly(rig: Rig, plan: Plan, rng: random.Random) -> int:
    """SIGKILL the ingest at a random moment after it is up (its /metrics answers: the
    store is open and it is about to consume), so kills land while batches are written."""
    for _ in range(plan.ingest_kills):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not scrape(rig.ingest_metrics_port):
            time.sleep(0.2)
        time.sleep(rng.uniform(*plan.kill_gap_s))
        rig.ingest_alive()
        rig.kill_ingest()
        rig.start_ingest()
    return plan.ingest_kills


def restart_server_repeatedly(rig: Rig, plan: Plan, rng: random.Random) -> list[float]:
    downtime = []
    for _ in range(plan.server_restarts):
        time.sleep(rng.uniform(2.0, 5.0))
        rig.kill_server()  # events in flight: some answered 2xx from the spool only
        downtime.append(rig.start_server())
    return downtime


def fuzz(rig: Rig, count: int) -> tuple[dict[tuple[int, int], str], int]:
    """Produce malformed records; return (partition, offset) → generator of each record Kafka
    acknowledged, and how many it did not (those never reached the ingest)."""
    producer = KafkaProducer(
        bootstrap_servers=rig.bootstrap, acks="all", linger_ms=10, max_request_size=4 << 20
    )
    topic = KafkaSettings().topic
    placed: dict[tuple[int, int], str] = {}
    failed = 0
    records = fuzz_records(count)
    for start in range(0, len(records), 500):  # chunks: a loaded broker never times out
        chunk = records[start : start + 500]
        futures = [
            (name, producer.send(topic, key=f"fz{start + i}".encode(), value=value))
            for i, (name, value) in enumerate(chunk)
        ]
        producer.flush()
        for name, future in futures:
            try:
                meta = future.get(timeout=60)
            except KafkaError:
                failed += 1
                continue
            placed[(meta.partition, meta.offset)] = name
    producer.close()
    return placed, failed


def outage(rig: Rig, shoppers: Shoppers, prober: Prober, plan: Plan) -> None:
    for phase, action in (("baseline", None), ("outage", rig.proxy.cut)):
        shoppers.phase = prober.phase = phase
        if action:
            action()
        time.sleep(plan.outage_s)
    rig.proxy.restore()
    shoppers.phase = prober.phase = "after_outage"


def restart_broker_repeatedly(rig: Rig, plan: Plan, rng: random.Random) -> None:
    for _ in range(plan.broker_restarts):
        time.sleep(rng.uniform(3.0, 6.0))
        rig.stop_broker()
        time.sleep(1.0)
        rig.start_broker()


def scrape(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return {}
    try:
        found = samples(text, *LOSS_COUNTERS)
    except ValueError:  # not the text format (a half-written answer): as if it did not answer
        return {}
    return {sample_key(s): s.value for s in found}


def audit(
    rig: Rig, shoppers: Shoppers, placed: dict[tuple[int, int], str], broker_phase: str
) -> dict[str, Any]:
    """Compare what the server accepted with what DuckDB holds."""
    con = duckdb.connect(str(rig.home / "events.duckdb"), read_only=True)
    try:
        stored = {r[0] for r in con.execute("SELECT event_id FROM interactions").fetchall()}
        rows, distinct = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM interactions"
        ).fetchall()[0]
        lists = {r[0] for r in con.execute("SELECT query_id FROM queries").fetchall()}
        letters = {
            (p, o): (code, reason)
            for p, o, code, reason in con.execute(
                "SELECT source_partition, source_offset, reason_code, reason FROM dead_letters"
            ).fetchall()
        }
        gaps = con.execute(
            "SELECT kind, count(*), sum(records_lost), count(records_lost) FROM offset_gaps "
            "GROUP BY kind ORDER BY kind"
        ).fetchall()
    finally:
        con.close()
    ledger = shoppers.ledger
    faults = {e for e, phase in ledger.accepted.items() if phase != broker_phase}
    during_broker = {e for e, phase in ledger.accepted.items() if phase == broker_phase}
    served_faults = {q for q, phase in ledger.served.items() if phase != broker_phase}
    fuzz_dead = [k for k in placed if k in letters and letters[k][1]]
    return {
        "accepted_events": len(ledger.accepted),
        "accepted_events_under_ingest_server_kafka_faults": len(faults),
        "lost_under_those_faults": len(faults - stored),
        "stored_duplicates": int(rows) - int(distinct),
        "served_lists_under_those_faults": len(served_faults),
        "served_lists_lost": len(served_faults - lists),
        "answers_without_status_stored_anyway": len(ledger.unknown & stored),
        "answers_without_status": len(ledger.unknown),
        "refused_503": ledger.refused,
        "accepted_during_broker_restarts": len(during_broker),
        "lost_in_broker_restarts": len(during_broker - stored),
        "offset_gaps": [
            {"kind": k, "count": int(n), "records_lost_known": int(s or 0), "with_count": int(c)}
            for k, n, s, c in gaps
        ],
        "fuzz_records": len(placed),
        "fuzz_dead_lettered_with_reason": len(fuzz_dead),
        "fuzz_share_dead_lettered": round(len(fuzz_dead) / max(len(placed), 1), 4),
    }


def run(plan: Plan, workdir: Path) -> dict[str, Any]:
    rng = random.Random(12)
    home = workdir / "home"
    make_home(home)
    rig = Rig(home=home, logs=workdir / "logs")
    figures: dict[str, Any] = {"cores": os.cpu_count(), "plan": plan.__dict__}
    try:
        rig.start_broker()
        rig.start_ingest()
        rig.start_server()
        shoppers, prober = Shoppers(rig.url), Prober(rig.url)
        shoppers.start()
        prober.start()
        started = time.monotonic()
        shoppers.phase = prober.phase = "ingest_kills"
        figures["ingest_kills"] = kill_ingest_repeatedly(rig, plan, rng)
        shoppers.phase = prober.phase = "server_restarts"
        figures["server_restart_s"] = restart_server_repeatedly(rig, plan, rng)
        shoppers.phase = prober.phase = "fuzz"
        placed, figures["fuzz_not_produced"] = fuzz(rig, plan.fuzz)
        rig.ingest_alive()
        outage(rig, shoppers, prober, plan)
        figures["drained_after_outage"] = wait_drained(rig)
        shoppers.phase = prober.phase = "broker_restarts"
        restart_broker_repeatedly(rig, plan, rng)
        shoppers.phase = prober.phase = "end"
        figures["drained"] = wait_drained(rig)
        figures["ingest_metrics"] = scrape(rig.ingest_metrics_port)
        shoppers.stop()
        prober.stop()
        figures["drained"] = wait_drained(rig) and figures["drained"]
        figures["seconds"] = round(time.monotonic() - started)
        rig.ingest_alive()
        figures["ingest_exits_on_their_own"] = rig.ingest_exits
        figures["ingest_stop_status"] = rig.stop_ingest()
        rig.stop_server()
        figures["audit"] = audit(rig, shoppers, placed, "broker_restarts")
        figures["healthz"] = prober.counts
        latency = shoppers.ledger.latency
        figures["search_p99_ms"] = {
            "baseline": p99(latency.get("baseline", [])),
            "outage": p99(latency.get("outage", [])),
        }
        figures["search_errors"] = shoppers.ledger.errors
        figures["searches"] = {k: len(v) for k, v in latency.items()}
    finally:
        rig.close()
    return figures


def report(f: dict[str, Any]) -> None:
    a = f["audit"]
    health = f["healthz"]
    outside = {phase: counts for phase, counts in health.items() if phase != "server_restarts"}
    non_200 = sum(n for counts in outside.values() for s, n in counts.items() if s != "200")
    probes = sum(n for counts in outside.values() for n in counts.values())
    p99s = f["search_p99_ms"]
    ratio = (
        round(p99s["outage"] / p99s["baseline"], 2) if p99s["outage"] and p99s["baseline"] else None
    )
    f["summary"] = {
        "accepted_events_lost": a["lost_under_those_faults"],
        "accepted_events_duplicated": a["stored_duplicates"],
        "ingest_exits_on_bad_records": len(f["ingest_exits_on_their_own"]),
        "malformed_dead_lettered_with_reason": a["fuzz_share_dead_lettered"],
        "healthz_non_200_outside_server_restarts": f"{non_200} of {probes}",
        "search_p99_outage_over_baseline": ratio,
        "broker_restart_losses": a["lost_in_broker_restarts"],
        "offset_gaps_recorded": sum(g["count"] for g in a["offset_gaps"]),
    }
    print(f"cores: {f['cores']} (shared with other engineers' processes)")
    print(f"ran {f['seconds']} s; plan {f['plan']}")
    print(
        f"accepted events: {a['accepted_events']:,}; under ingest kills, server restarts, fuzz "
        f"and the Kafka outage {a['accepted_events_under_ingest_server_kafka_faults']:,}: "
        f"lost {a['lost_under_those_faults']}, stored twice {a['stored_duplicates']}"
    )
    print(
        f"served lists under those faults: {a['served_lists_under_those_faults']:,}, "
        f"lost {a['served_lists_lost']}; 503 refusals {a['refused_503']}; answers cut off "
        f"{a['answers_without_status']} (stored anyway {a['answers_without_status_stored_anyway']})"
    )
    print(
        f"ingest exits on its own (bad records): {f['ingest_exits_on_their_own'] or 'none'}; "
        f"final SIGTERM exit status {f['ingest_stop_status']}"
    )
    print(
        f"fuzz: {a['fuzz_records']:,} malformed records, {a['fuzz_dead_lettered_with_reason']:,} "
        f"in dead_letters with a reason ({a['fuzz_share_dead_lettered']:.2%}); "
        f"{f.get('fuzz_not_produced', 0)} not acknowledged by the broker (never consumed)"
    )
    print(f"/healthz: {health}")
    print(
        f"search p99: baseline {p99s['baseline'] and round(p99s['baseline'], 1)} ms, during "
        f"the Kafka outage {p99s['outage'] and round(p99s['outage'], 1)} ms (ratio {ratio}); "
        f"searches {f['searches']}; errors {f['search_errors']}"
    )
    print(
        f"broker restarts: {a['accepted_during_broker_restarts']:,} events accepted, "
        f"{a['lost_in_broker_restarts']} lost with the broker's memory; offset gaps recorded: "
        f"{a['offset_gaps']}; ingest metrics {f['ingest_metrics']}"
    )
    print(f"server restarts took {f['server_restart_s']} s; drained: {f['drained']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke-test sized run (~2 min)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="flywheel-chaos-"))
    try:
        figures = run(QUICK if args.quick else Plan(), workdir)
        figures["command"] = "python -m benchmarks.chaos" + (" --quick" if args.quick else "")
        report(figures)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    finally:
        if args.keep:
            print(f"work folder: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
