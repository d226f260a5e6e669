"""``flywheel demo``: the whole flywheel on one machine, bounded, with a live table and a report.

Starts the Kafka-compatible broker, the ingest (Kafka -> DuckDB), the search service and the
storefront page, then lets simulated shoppers (services.simulator) search and shop over HTTP.
Every ``events_per_round`` shopper events a round ends: the ingest snapshots; unless a canary
is still being judged, the retrainer fine-tunes a candidate from the feedback and gates it
(held-out, guard and reference checks) and a passing one becomes the canary; the canary
controller then judges the canary live (interleaving by default) for up to ``canary_round_s``.
Each round also measures production (and the canary) on held-out labelled queries the shoppers
never issue.
The demo ends after ``rounds`` rounds or ``max_minutes``, or on Ctrl-C, and always writes
``reports/flywheel.html``.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import SecretStr
from rich.console import Group
from rich.live import Live
from rich.text import Text

from flywheel_cli.demo_report import RoundRecord, rounds_table, write_report
from flywheel_cli.ui import CtrlC, console, fail, progress_bar
from services.decisions import CanaryDecision
from services.errors import FlywheelError
from services.net import free_port
from services.registry import ModelRegistry
from services.settings import SearchMode, Settings
from services.simulator import IntentPool, ShopperTraffic, TrafficStats, load_intents

if TYPE_CHECKING:
    from retrainer.adapt.run import AdaptOutcome

logger = logging.getLogger(__name__)

app = typer.Typer()

FIRST_RETRAIN_S = 150.0
"""Expected length of the first retraining (training 1,500 pairs, indexing, gate), 2 cores."""

HELDOUT_QUERIES = 300
"""Held-out labelled queries measured each round (a sample, to keep rounds short on a CPU)."""


def demo_settings(base: Settings, home: Path, ports: tuple[int, int]) -> Settings:
    """The settings the demo runs with: its own home and CPU-sized rounds."""
    settings = base.model_copy(deep=True)
    settings.home = home
    cfg = settings.demo
    settings.server.port = ports[0]
    settings.server.cors_origins = [f"http://127.0.0.1:{ports[1]}", f"http://localhost:{ports[1]}"]
    settings.server.registry_poll_s = 1.0
    settings.ingest.metrics_port = 0
    # Snapshots for the canary controller rebuild the derived tables anyway; the metrics
    # refresh between them would only take cores from the shoppers.
    settings.ingest.online_metrics_interval_s = 60.0
    # Online metrics count a list once its attribution window closes; simulated shoppers act
    # at once, so seconds are enough here (30 minutes in production).
    settings.ingest.store.derived.attribution_window_s = 3.0
    settings.train.max_examples = min(settings.train.max_examples, cfg.train_examples)
    settings.train.learning_rate = cfg.learning_rate
    settings.adapt.pairs = cfg.adapt_pairs
    settings.retrain.canary_fraction = cfg.canary_fraction
    settings.retrain.drop_rejected_index = False  # each round measures the candidate, passed or not
    settings.retrain.canary.max_lists_per_arm = cfg.max_lists_per_arm
    settings.retrain.min_new_pairs = min(settings.retrain.min_new_pairs, 100)
    settings.retrain.gate.min_heldout_queries = min(settings.retrain.gate.min_heldout_queries, 20)
    settings.retrain.heldout_fraction = cfg.gate_heldout_fraction
    # The statistics are production's; the demo brings more shoppers instead, so that a canary
    # is decided in minutes.
    settings.simulator.sessions_per_s = cfg.sessions_per_s
    # The simulated shoppers come from many addresses (X-Forwarded-For, as behind a proxy), so
    # the per-client caps see each shopper as the production ingress would.
    settings.server.client_address_header = "x-forwarded-for"
    settings.simulator.send_forwarded_for = True
    return settings


def _bootstrap(settings: Settings, pool: IntentPool) -> None:
    """Register the bundled model as v1, index the catalog with it and make it production."""
    from services.indexing import bootstrap_home

    products = pool.labelled.products
    with progress_bar() as bar:
        task = bar.add_task(f"indexing {len(products)} products with v1", total=len(products))
        bootstrap_home(settings, products, model="bundled", progress=lambda n: bar.advance(task, n))


def _adapt(settings: Settings, pool: IntentPool) -> AdaptOutcome:
    """``flywheel adapt --promote`` on the demo catalog: no labels, and no query of the
    held-out side (the table's test queries) among the generated ones."""
    from flywheel_cli.adapt_cmd import print_outcome, stage_bars
    from retrainer.adapt.run import adapt_catalog

    console.print(
        f"adapting v1 to the catalog ({settings.adapt.pairs} generated pairs; "
        "FLYWHEEL_DEMO__ADAPT_PAIRS)"
    )
    with progress_bar() as bar:
        outcome = adapt_catalog(
            settings,
            use_llm=False,
            promote=True,
            progress=stage_bars(bar),
            actor="demo",
            exclude_queries=[pool.labelled.queries[q] for q in pool.heldout_ids],
        )
    print_outcome(outcome)
    return outcome


class HeldOut:
    """nDCG@10 on held-out labelled queries, per model version and mode, computed in-process on
    private copies of the versions' indexes (the server keeps its own open)."""

    def __init__(self, settings: Settings, pool: IntentPool, scratch: Path) -> None:
        from retrainer.scratch import index_reader
        from services.encoding.versions import VersionEncoders
        from services.evaluation.heldout import HeldOutEvaluator
        from services.registry import ModelRegistry

        self.evaluator = HeldOutEvaluator(
            pool.test_set(HELDOUT_QUERIES),
            encoder=VersionEncoders(ModelRegistry(settings.registry_dir)),
            open_index=index_reader(settings, scratch),
            fusion=settings.search.hybrid_fusion(),
        )

    def measure(self, version: str, *, bm25: bool = False) -> dict[str, float]:
        """{'VERSION SPLADE': .., 'VERSION hybrid': ..} (and 'BM25'), cached per version."""
        systems: dict[str, tuple[str, SearchMode]] = {
            f"{version} SPLADE": (version, "splade"),
            f"{version} hybrid": (version, "hybrid"),
        }
        if bm25:
            systems["BM25"] = (version, "bm25")
        report = self.evaluator.report(systems, dataset="held-out")
        return {name: report.mean(name) for name in systems}


class Loop:
    """One demo run: the services in the background, rounds in the foreground."""

    def __init__(
        self,
        settings: Settings,
        pool: IntentPool,
        traffic: ShopperTraffic,
        ctrl_c: CtrlC | None = None,
    ) -> None:
        self.settings = settings
        self.ctrl_c = ctrl_c or CtrlC()
        """Checked between steps: a Ctrl-C swallowed by a finaliser still stops the run."""
        self.pool = pool
        self.traffic = traffic
        self.rounds: list[RoundRecord] = []
        self.phase = "starting"
        self.started = time.monotonic()
        self.retrain_s: float | None = None
        """How long the last retraining took (a new one must fit before the deadline)."""
        self.heldout = HeldOut(settings, pool, settings.home)
        self._mark = self._counters()

    def _counters(self) -> tuple[float, int, Counter[str]]:
        stats = self.traffic.stats
        return time.monotonic(), stats.searches, Counter(stats.actions)

    def render(self) -> Group:
        stats: TrafficStats = self.traffic.stats
        p99 = stats.latency_percentile(0.99)
        line = Text.assemble(
            ("now: ", "bold"),
            f"{self.phase}\n{stats.searches} searches ({stats.searches_per_s():.1f}/s), "
            f"{stats.events_sent} events, {stats.events_rejected} rejected, "
            f"{stats.search_errors} errors, p99 {p99 or 0:.1f} ms, "
            f"{time.monotonic() - self.started:.0f} s",
        )
        return Group(rounds_table(self.rounds), line)

    def wait_for_events(self, target: int, deadline: float) -> bool:
        """Until the shoppers have sent ``target`` events; False when the time is up."""
        while self.traffic.stats.events_sent < target:
            self.ctrl_c.check()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    def finish_round(self, number: int, deadline: float) -> RoundRecord:
        """One turn of the loop: retrain on the feedback so far and gate the candidate (unless
        a canary is still being judged), judge the canary live until the controller decides
        or the round's time is up, then measure."""
        ended, searches, actions = self._counters()
        began, searches0, actions0 = self._mark
        p50, p99 = (self.traffic.stats.latency_percentile(q, since=searches0) for q in (0.5, 0.99))
        self.ctrl_c.check()
        self.phase = f"round {number}: snapshot"
        self._snapshot()
        registry = ModelRegistry(self.settings.registry_dir)

        canary = registry.pointers().canary
        gate, short, candidate = "canary still judged", "", canary
        # Later rounds train on more pairs (up to train_examples) than the first: a margin.
        needed = 1.5 * max(self.retrain_s or 0.0, FIRST_RETRAIN_S)
        if canary is None and time.monotonic() + needed > deadline:
            gate = f"retrain: skipped, {needed:.0f} s of it would pass the time bound"
            short = "no time to retrain"
        elif canary is None:  # a canary being judged is not replaced by a new candidate
            gate, short, candidate = self.retrain(number)
            canary = registry.pointers().canary
        self.ctrl_c.check()
        verdict = None
        if canary:
            until = min(deadline, time.monotonic() + self.settings.demo.canary_round_s)
            verdict = self.judge_canary(number, canary, until)
            verb = {"promote": "promoted", "rollback": "rolled back", "wait": "waits"}
            short = f"{verb[verdict.decision]} {canary}"
        self.ctrl_c.check()
        after = registry.pointers()
        assert after.production is not None
        self.phase = f"round {number}: measuring held-out nDCG"
        heldout = self.heldout.measure(after.production, bm25=True)
        if candidate and candidate != after.production:
            heldout |= self.heldout.measure(candidate)
        decision = (
            gate if verdict is None else f"{gate}; canary {verdict.decision}: {verdict.reason}"
        )
        record = RoundRecord(
            round=number,
            production=after.production,
            canary=candidate if candidate != after.production else None,
            decision=decision,
            outcome=short,
            heldout_ndcg=heldout,
            online_ndcg=self._online(verdict),
            searches_per_s=(searches - searches0) / max(ended - began, 1e-9),
            p50_ms=p50,
            p99_ms=p99,
            events=dict(actions - actions0),
            seconds=round(time.monotonic() - self.started, 1),
            signal=_signal(verdict),
        )
        self.rounds.append(record)
        self._mark = self._counters()  # the next round's rates cover its shopping only
        return record

    def retrain(self, number: int) -> tuple[str, str, str | None]:
        """Retrain and gate; (the gate's summary, a few words, the candidate)."""
        from retrainer.pipeline import run_retrain

        def stage(name: str) -> None:
            self.phase = f"round {number}: retraining ({name})"

        # On a laptop the trainer shares the cores with everything else; in production it runs
        # elsewhere. Pausing arrivals keeps rounds short and latencies honest.
        self.traffic.pause()
        began = time.monotonic()
        try:
            outcome = run_retrain(self.settings, stage=stage)
        finally:
            self.traffic.resume()
            self.retrain_s = time.monotonic() - began
        if outcome.decision is None:
            return (
                f"retrain: {outcome.status} ({outcome.message})",
                f"retrain {outcome.status}",
                None,
            )
        passed = outcome.decision.passed
        short = f"{'canary' if passed else 'rejected'} {outcome.candidate}"
        return outcome.decision.summary(), short, outcome.candidate

    def judge_canary(self, number: int, canary: str, deadline: float) -> CanaryDecision:
        """The canary controller on fresh snapshots every ``judge_every_s`` until it decides;
        when time runs out, what it last said (or one last look, applied like the others)."""
        from retrainer.canary import run_controller

        last: CanaryDecision | None = None
        while True:
            if time.monotonic() + self.settings.demo.judge_every_s > deadline:
                return last or run_controller(self.settings)
            time.sleep(self.settings.demo.judge_every_s)
            self.ctrl_c.check()
            self._snapshot()
            verdict = last = run_controller(self.settings)
            self.phase = f"round {number}: canary {canary}: {verdict.reason}"
            if verdict.decision != "wait":
                return verdict

    def _snapshot(self) -> None:
        from feedback_ingest.service import request_snapshot

        request_snapshot(self.settings)

    def _online(self, verdict: CanaryDecision | None) -> dict[str, tuple[float, int]]:
        """Online nDCG@10 per arm (and the canary's interleaved win share) so far."""
        from retrainer.canary import arm_stats
        from services.snapshots import Snapshot

        online: dict[str, tuple[float, int]] = {}
        snapshot = Snapshot.latest(self.settings.exports_dir)
        production = ModelRegistry(self.settings.registry_dir).pointers().production
        arms = []
        if snapshot is not None and production:
            arms.append(("production", arm_stats(snapshot, production, "production")))
        if verdict is not None and verdict.canary is not None:
            arms.append(("canary", verdict.canary))
        for arm, stats in arms:
            if stats.lists:
                online[f"{arm} {stats.version}"] = (stats.mean, stats.lists)
        if (
            verdict is not None
            and verdict.interleaving is not None
            and verdict.interleaving.decided
        ):
            won = verdict.interleaving.wins / verdict.interleaving.decided
            online[f"interleaved {verdict.canary_version} wins"] = (won, verdict.interleaving.lists)
        return online


def _signal(verdict: CanaryDecision | None) -> str | None:
    """Which signal decided, in a few words: 'interleaving (sequential), 412 lists'."""
    if verdict is None or verdict.signal is None:
        return None
    return f"{verdict.signal} ({verdict.test}), {verdict.evidence} lists"


def _facts(settings: Settings, pool: IntentPool, urls: dict[str, str]) -> dict[str, str]:
    cfg = settings.demo
    return {
        "catalog": f"{pool.labelled.name}: {len(pool.labelled.products)} products, "
        f"{len(pool.train)} shopper queries, {len(pool.heldout)} held-out queries",
        "shoppers": f"Poisson arrivals at {settings.simulator.sessions_per_s}/s, position-based "
        f"examination r^-{settings.simulator.examination_decay}, click noise "
        f"{settings.simulator.click_noise}",
        "rounds": f"{cfg.rounds} x {cfg.events_per_round} events; training pairs per run "
        f"{settings.train.max_examples}; canary fraction {cfg.canary_fraction}",
        "gate": f"held-out feedback queries {settings.retrain.heldout_fraction:.0%}, "
        f"{settings.retrain.gate.heldout_rule.replace('_', '-')} (margin "
        f"{settings.retrain.gate.margin}); reference check against the first version",
        "canary": f"{settings.retrain.canary.judge} judged by a {settings.retrain.canary.test} "
        f"test (alpha {settings.retrain.canary.alpha}) every {cfg.judge_every_s:g} s on "
        f"{cfg.canary_fraction:.0%} of sessions; undecided after "
        f"{settings.retrain.canary.max_lists_per_arm} lists: rolled back",
        "adapt": f"v1 adapted to the catalog first ({settings.adapt.pairs} generated pairs, "
        "no labels)"
        if cfg.adapt
        else "off (--adapt adapts v1 to the catalog before the shoppers arrive)",
        "search mode": f"{settings.search.default_mode} (the server default; hybrid fusion "
        f"{settings.search.hybrid_fusion().describe()})",
        **urls,
        "home": str(settings.home),
    }


@app.command()
def demo(
    rounds: Annotated[int | None, typer.Option(help="Rounds before the demo ends.")] = None,
    events_per_round: Annotated[
        int | None, typer.Option(help="Shopper events between retraining runs.")
    ] = None,
    products: Annotated[int | None, typer.Option(help="Catalog size (generated/sampled).")] = None,
    port: Annotated[int | None, typer.Option(help="Search API port (0: any free).")] = None,
    storefront_port: Annotated[
        int | None, typer.Option(help="Storefront page port (0: any free).")
    ] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Hard time bound.")] = None,
    report: Annotated[Path | None, typer.Option(help="HTML report path.")] = None,
    fresh: Annotated[
        bool, typer.Option(help="Start from an empty demo home ($FLYWHEEL_HOME/demo).")
    ] = True,
    adapt: Annotated[
        bool | None,
        typer.Option(
            "--adapt/--no-adapt",
            help="Adapt v1 to the catalog before the shoppers arrive (flywheel adapt, no "
            "labels; minutes not counted in --max-minutes). Default: FLYWHEEL_DEMO__ADAPT.",
        ),
    ] = None,
) -> None:
    """Run the flywheel end to end on simulated shoppers, then write reports/flywheel.html."""
    base = Settings()
    overrides = {
        "rounds": rounds,
        "events_per_round": events_per_round,
        "products": products,
        "port": port,
        "storefront_port": storefront_port,
        "max_minutes": max_minutes,
        "report": report,
        "adapt": adapt,
    }
    base.demo = base.demo.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    cfg = base.demo
    ports = (cfg.port or free_port(), cfg.storefront_port or free_port())
    home = base.home / "demo"
    if fresh:
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(base, home, ports)
    # The time bound covers the whole command, set-up included.
    deadline = time.monotonic() + cfg.max_minutes * 60
    try:
        pool = load_intents(settings.simulator, products=cfg.products)
        from services.registry import ModelRegistry

        adapted = None
        if ModelRegistry(settings.registry_dir).pointers().production is None:
            _bootstrap(settings, pool)
            if cfg.adapt:
                adapted = _adapt(settings, pool)
                # The time bound is the shopping's: adapting is a one-off set-up step.
                deadline = time.monotonic() + cfg.max_minutes * 60
        _run(settings, pool, ports, deadline, adapted)
    except FlywheelError as exc:
        raise fail(exc) from exc


def _start_services(
    stack: contextlib.ExitStack, settings: Settings, ports: tuple[int, int]
) -> tuple[str, str]:
    """Broker (unless Kafka is configured), ingest, search API and storefront; their URLs."""
    from encoder_server.app import create_app
    from feedback_ingest.service import run_ingest
    from flywheel_cli.storefront import serve_storefront
    from flywheel_cli.threaded import serve_in_thread
    from services.kafka.broker import EmbeddedBroker, ensure_topics

    if not settings.kafka.bootstrap_servers:
        broker = stack.enter_context(EmbeddedBroker().start())
        settings.kafka.bootstrap_servers = broker.bootstrap_servers
    ensure_topics(settings.kafka.bootstrap(), settings.kafka.topics())
    stop_ingest = threading.Event()
    ingest = threading.Thread(
        target=run_ingest,
        args=(settings,),
        kwargs={"stop": stop_ingest},
        name="ingest",
        daemon=True,
    )
    ingest.start()
    stack.callback(ingest.join, 30)
    stack.callback(stop_ingest.set)
    api = stack.enter_context(serve_in_thread(create_app(settings), port=ports[0]))
    shop = stack.enter_context(serve_storefront(api, port=ports[1]))
    return api, shop


def _log_to_file(path: Path) -> None:
    """Send logs to a file: the live table owns the terminal, and each search logs a line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run(
    settings: Settings,
    pool: IntentPool,
    ports: tuple[int, int],
    deadline: float,
    adapted: AdaptOutcome | None = None,
) -> None:
    cfg = settings.demo
    _log_to_file(settings.home / "demo.log")
    finished = False
    if settings.server.admin_token is None:
        # The status page needs the admin token: a fresh one for this run, shown below.
        settings.server.admin_token = SecretStr(secrets.token_urlsafe(16))
    status = f"/status?token={settings.server.admin_token.get_secret_value()}"
    with contextlib.ExitStack() as stack:
        ctrl_c = stack.enter_context(CtrlC())
        api, shop = _start_services(stack, settings, ports)
        # The report names the page, not the token (it outlives this run's token).
        urls = {"search API": f"{api}/docs", "storefront": shop, "status page": f"{api}/status"}
        traffic = ShopperTraffic(api, pool, settings.simulator)
        stop_shoppers = threading.Event()
        shoppers = traffic.start_thread(stop_shoppers)
        stack.callback(shoppers.join, 30)
        stack.callback(stop_shoppers.set)
        loop = Loop(settings, pool, traffic, ctrl_c)
        facts = _facts(settings, pool, urls)
        console.print(
            f"storefront: {shop}   search API: {api}/docs   status: {api}{status}\n"
            f"log: {settings.home / 'demo.log'}   Ctrl-C stops (the report is still written)"
        )
        try:
            with Live(
                loop.render(), console=console, refresh_per_second=2, vertical_overflow="visible"
            ) as live:
                refresher = threading.Thread(
                    target=_refresh, args=(live, loop, stop_shoppers), daemon=True
                )
                refresher.start()
                loop.rounds += _round_zero(loop, adapted)
                for number in range(1, cfg.rounds + 1):
                    loop.phase = f"round {number}: shoppers shopping"
                    target = traffic.stats.events_sent + cfg.events_per_round
                    if not loop.wait_for_events(target, deadline):
                        loop.phase = "time is up"
                        break
                    loop.finish_round(number, deadline)
                    write_report(cfg.report, loop.rounds, facts, finished=False)
                else:
                    finished = True
                live.update(loop.render())
        except KeyboardInterrupt:
            console.print("[yellow]Ctrl-C: stopping shoppers, ingest and services…[/yellow]")
        finally:
            stop_shoppers.set()
            path = write_report(cfg.report, loop.rounds, facts, finished=finished)
            console.print(f"\nreport: {path.resolve()}")
    console.print(f"events are in {settings.store_path}")


def _round_zero(loop: Loop, adapted: AdaptOutcome | None) -> list[RoundRecord]:
    """The starting point: the bundled model and BM25 on the held-out queries, then (with
    ``--adapt``) the adapted model and what its gate decided."""
    from services.registry import ModelRegistry

    production = ModelRegistry(loop.settings.registry_dir).pointers().production
    assert production is not None
    loop.phase = "round 0: measuring the bundled model"
    first = adapted.version if adapted and adapted.status == "production" else None
    bundled = ModelRegistry(loop.settings.registry_dir).versions()[0] if first else production
    rows = [
        RoundRecord(
            round=0,
            production=bundled,
            canary=None,
            decision="start: bundled SPLADE off the shelf",
            outcome="start",
            heldout_ndcg=loop.heldout.measure(bundled, bm25=True),
            seconds=round(time.monotonic() - loop.started, 1),
        )
    ]
    loop.ctrl_c.check()
    if adapted is not None:
        candidate = adapted.version
        decision = f"adapt: {adapted.status} ({adapted.message})"
        if adapted.decision is not None:
            decision = f"adapt: {adapted.decision.summary()}"
        heldout = loop.heldout.measure(production, bm25=True)
        if candidate and candidate != production:
            heldout |= loop.heldout.measure(candidate)
        rows.append(
            RoundRecord(
                round=0,
                production=production,
                canary=candidate if candidate != production else None,
                decision=decision,
                outcome=f"adapted: {production}"
                if first
                else f"adapt {adapted.status} {candidate or ''}".strip(),
                heldout_ndcg=heldout,
                seconds=round(time.monotonic() - loop.started, 1),
            )
        )
    return rows


def _refresh(live: Live, loop: Loop, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        with contextlib.suppress(Exception):  # a render racing a round's update is retried
            live.update(loop.render())
