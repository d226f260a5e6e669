"""``python -m benchmarks.flywheel``: arguments, logging, the run and its outputs."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.flywheel.protocol import BenchConfig, BenchResult, run_benchmark
from benchmarks.flywheel.report import write_outputs
from services.datasets.base import LabelledSet
from services.errors import FlywheelError
from services.settings import Settings

logger = logging.getLogger("benchmarks.flywheel")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = BenchConfig()
    search = Settings().search  # FLYWHEEL_SEARCH__* set the fusion's defaults, as for serving
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flywheel",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default="homedepot", help="labelled set spec (NAME[:PATH])")
    parser.add_argument("--rounds", type=int, default=d.rounds)
    parser.add_argument("--sessions-per-round", type=int, default=d.sessions_per_round)
    parser.add_argument("--test-queries", type=int, default=d.test_queries)
    parser.add_argument("--serve-mode", choices=["hybrid", "splade"], default=d.serve_mode)
    parser.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="triples per retraining run (default: train.max_examples, 20,000)",
    )
    parser.add_argument(
        "--supervised-examples",
        type=int,
        default=d.supervised_examples,
        help="triples of the supervised reference (0: skip it)",
    )
    parser.add_argument(
        "--canary-fraction",
        type=float,
        default=d.canary_fraction,
        help="sessions that see a passing candidate interleaved with production (0: promote "
        "a passing candidate at once, without an online judgment)",
    )
    parser.add_argument(
        "--canary-sessions",
        type=int,
        default=d.canary_sessions,
        help="sessions between two looks of the canary controller",
    )
    parser.add_argument("--canary-looks", type=int, default=d.canary_looks)
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="run flywheel adapt on the catalog before round 1 (catalog only, no labels): do "
        "the gains of adapting and of learning from clicks add up?",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--fusion",
        choices=["convex", "rrf"],
        default=search.fusion,
        help="fusion of the hybrid mode, served, gated and evaluated (default: what GET /search "
        "serves, search.fusion)",
    )
    parser.add_argument(
        "--splade-weight",
        type=float,
        default=search.splade_weight,
        help="SPLADE's share of the convex fusion (search.splade_weight)",
    )
    parser.add_argument(
        "--rrf-k",
        type=int,
        default=search.rrf_k,
        help="RRF constant of --fusion rrf (search.rrf_k)",
    )
    parser.add_argument(
        "--threads", type=int, default=d.threads, help="query-encoding threads (0: every core)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("reports/flywheel"),
        help="folder for flywheel.md/.json/.png/.log",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no round that would likely end after this many minutes (outputs are "
        "rewritten after every round either way)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="a fresh FLYWHEEL_HOME to keep (default: a removed temporary one)",
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "sessions_per_round", "test_queries", "supervised_examples"):
        if getattr(args, name) < (0 if name in {"rounds", "supervised_examples"} else 1):
            parser.error(f"--{name.replace('_', '-')} is too small")
    return args


def setup_logging(log_file: Path) -> list[logging.Handler]:
    """INFO to stderr and to ``log_file``; returns the handlers for :func:`main` to remove."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.FileHandler(log_file, "w", encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("httpx", "numba", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handlers


def main(argv: Sequence[str] | None = None, *, labelled: LabelledSet | None = None) -> int:
    """The command line; ``labelled`` replaces ``--dataset`` (tests). Returns the exit code:
    0, or 2 when the data, a model or a run fails (the reason is printed)."""
    from rich.console import Console

    args = parse_args(argv)
    console = Console(soft_wrap=True, highlight=False)
    handlers = setup_logging(args.out / "flywheel.log")
    cfg = BenchConfig(
        rounds=args.rounds,
        sessions_per_round=args.sessions_per_round,
        test_queries=args.test_queries,
        serve_mode=args.serve_mode,
        train_examples=args.train_examples,
        supervised_examples=args.supervised_examples,
        seed=args.seed,
        threads=args.threads,
        fusion=args.fusion,
        splade_weight=args.splade_weight,
        rrf_k=args.rrf_k,
        canary_fraction=args.canary_fraction,
        canary_sessions=args.canary_sessions,
        canary_looks=args.canary_looks,
        adapt=args.adapt,
    )
    started = time.perf_counter()
    home = args.home or Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    try:
        if labelled is None:
            from services.datasets.loader import load_dataset

            labelled = load_dataset(args.dataset)
        deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None

        def partial(so_far: BenchResult) -> None:
            so_far.timings["total"] = time.perf_counter() - started
            write_outputs(so_far, args.out)

        result = run_benchmark(
            Settings(home=home), labelled, cfg, deadline=deadline, on_round=partial
        )
        result.timings["total"] = time.perf_counter() - started
        paths = write_outputs(result, args.out)
    except FlywheelError as exc:
        logger.error("benchmark failed: %s", exc)
        console.print(f"[red]error[/red]: {exc}")
        return 2
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
    console.print(paths["markdown"].read_text(encoding="utf-8"), markup=False)
    best = result.best_mode()
    console.print(
        f"best mode for the final flywheel model {best['version']}: [bold]{best['mode']}[/bold] "
        f"-> search.default_mode = {best['mode']}"
    )
    console.print(
        f"wall time {result.timings['total']:.0f} s; wrote "
        + ", ".join(str(p) for p in paths.values()),
        markup=False,
    )
    return 0
