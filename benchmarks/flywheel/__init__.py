"""Does the flywheel learn? Simulated shoppers on training queries, human labels on test queries.

Protocol (``--dataset homedepot``; any labelled set works):

1. The labelled queries are split by a salted hash of their normalised text, exactly as
   :class:`~services.simulator.intents.IntentPool` splits them (``simulator.holdout_fraction``).
   Shoppers only ever issue *train* queries. The *test* queries are up to ``--test-queries``
   held-out queries with at least 2 judged products, drawn by
   :func:`~services.datasets.protocol.sample_queries` (seed 42); the corpus is the whole catalog.
2. A fresh ``FLYWHEEL_HOME``: the bundled model is registered as v1, the catalog indexed and
   saved where the retrainer reads it.
3. Round 0 measures BM25 (Robertson & Zaragoza, 2009), off-the-shelf SPLADE (Formal et al.,
   2021) and both fused as hybrid mode serves them (``search.fusion``: the convex combination
   of Bruch et al., 2023, or reciprocal rank, Cormack et al., 2009) on the test queries.
4. A supervised reference: v1 fine-tuned on labelled triples of *train* queries only
   (:func:`retrainer.bootstrap.train_labelled`, the ``flywheel train`` code path).
5. Each round: ``--sessions-per-round`` simulated sessions search the production model
   in-process (:class:`~services.simulator.rounds.OfflineShoppers`: routed and ranked as
   ``GET /search`` does, ``--serve-mode``, k = 10) and react by true grade
   (:class:`~services.simulator.behaviour.ShopperBehaviour`); their served lists and
   interactions are stored and snapshotted as the Kafka consumer does, then
   :func:`retrainer.pipeline.run_retrain` runs. A candidate that passes the gate becomes a
   canary on ``--canary-fraction`` of sessions, shown team-draft interleaved with production;
   every ``--canary-sessions`` sessions the canary controller judges it
   (:func:`retrainer.canary.run_controller`) until it promotes or rolls it back. The
   production model is evaluated alone and fused with BM25.

Metrics: nDCG@10 (Järvelin & Kekäläinen, 2002; linear gain), MRR@10 and Recall@100, with
ranx's two-sided paired t-test of every system against BM25 (:mod:`services.evaluation.metrics`);
† marks p ≤ 0.01. Only human labels of test queries are used for the figures, never clicks.

Writes ``flywheel.md`` (tables), ``flywheel.json`` (all figures, timings and configuration),
``flywheel.png`` (nDCG@10 per round) and ``flywheel.log`` into ``--out``. The package:
:mod:`.protocol` (split, rounds, retraining and canary), :mod:`.report` (tables and plot),
:mod:`.cli` (the command line).

GPU (defaults: 5 rounds x 20,000 sessions, 20,000 training and 20,000 supervised triples):
    python -m benchmarks.flywheel --dataset homedepot --out reports/flywheel
CPU (2 cores; about 10 minutes):
    python -m benchmarks.flywheel --dataset homedepot --rounds 2 --sessions-per-round 3000 \\
        --train-examples 2000 --supervised-examples 2000 --test-queries 1000 --out /tmp/fw
Settings come from ``FLYWHEEL_*`` variables as everywhere (e.g. ``FLYWHEEL_TRAIN__BATCH_SIZE``,
``FLYWHEEL_RETRAIN__GATE__MIN_GAIN``, ``FLYWHEEL_ENCODER__DOC_BACKEND=torch`` on a GPU).
"""

from benchmarks.flywheel.cli import main, parse_args
from benchmarks.flywheel.protocol import (
    SYSTEMS,
    BenchConfig,
    BenchResult,
    ServeMode,
    Shoppers,
    SimulationStats,
    Split,
    run_benchmark,
    split_queries,
)
from benchmarks.flywheel.report import plot, to_markdown, write_outputs

__all__ = [
    "SYSTEMS",
    "BenchConfig",
    "BenchResult",
    "ServeMode",
    "Shoppers",
    "SimulationStats",
    "Split",
    "main",
    "parse_args",
    "plot",
    "run_benchmark",
    "split_queries",
    "to_markdown",
    "write_outputs",
]
