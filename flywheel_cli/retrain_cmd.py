"""``flywheel train`` (bootstrap from labelled data) and ``flywheel retrain`` (from feedback)."""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from flywheel_cli.ui import CtrlC, console, fail, progress_bar
from services.errors import ConfigError, FlywheelError
from services.settings import Settings

logger = logging.getLogger(__name__)

app = typer.Typer()

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90s', '15m', '6h', '1d' → seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise ConfigError(f"cannot read duration {text!r}; use e.g. 90s, 15m, 6h or 1d.")
    return float(match[1]) * _UNITS[match[2]]


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option(help="Labelled set(s), e.g. homedepot:PATH; comma-separated.")
    ],
    base: Annotated[str | None, typer.Option(help="Version or checkpoint to start from.")] = None,
    examples: Annotated[
        int | None, typer.Option(help="Training triples (default from settings).")
    ] = None,
) -> None:
    """Fine-tune SPLADE on labelled data alone and register it as a new version (not promoted)."""
    from rich.progress import TaskID

    from retrainer.bootstrap import train_labelled
    from retrainer.data import is_heldout
    from retrainer.training import TrainingExample, TrainResult
    from services.datasets.loader import load_dataset
    from services.registry import ModelRegistry
    from services.settings import TrainSettings

    settings = Settings()
    registry = ModelRegistry(settings.registry_dir)

    def record(
        triples: Sequence[TrainingExample], cfg: TrainSettings, result: TrainResult
    ) -> dict[str, Any]:
        return {
            "dataset": dataset,
            "examples": len(triples),
            "heldout_fraction": settings.retrain.heldout_fraction,
            "hyperparameters": cfg.model_dump(),
            "result": {
                "device": result.device,
                "steps": result.steps,
                "seconds": round(result.seconds, 1),
            },
        }

    try:
        parent = base or registry.pointers().production
        sets = [load_dataset(spec.strip()) for spec in dataset.split(",") if spec.strip()]
        heldout = {
            q
            for ls in sets
            for q in ls.queries.values()
            if is_heldout(q, settings.retrain.heldout_fraction)
        }
        with progress_bar() as bar:
            task = TaskID(-1)

            def started(triples: Sequence[TrainingExample]) -> None:
                nonlocal task
                task = bar.add_task(f"training on {len(triples)} triples", total=None)

            card, result = train_labelled(
                settings,
                sets,
                base=parent or "bundled",
                examples=examples or settings.train.max_examples,
                exclude_queries=heldout,
                source=f"train:{dataset}",
                # The configured settings as they are: --examples caps the triples drawn only.
                train=settings.train,
                progress=lambda step, total: bar.update(task, completed=step, total=total),
                on_triples=started,
                record=record,
            )
    except FlywheelError as exc:
        raise fail(exc) from exc
    console.print(
        f"registered [bold]{card.version}[/bold] ({result.examples_per_second:.1f} triples/s on "
        f"{result.device}). Evaluate: `flywheel eval --dataset {dataset} --model {card.version}`; "
        f"index and serve it: `flywheel index --catalog FILE --model {card.version}`."
    )


@app.command()
def retrain(
    every: Annotated[
        str | None, typer.Option(help="Run forever at this interval (e.g. 6h); default: once.")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics here while running --every (0: off).")
    ] = 0,
) -> None:
    """Fine-tune on the latest feedback snapshot, gate it, and publish it as canary/production."""
    from retrainer.pipeline import run_retrain
    from services.metrics import serving_metrics

    settings = Settings()
    try:
        interval = parse_duration(every) if every else None
    except FlywheelError as exc:
        raise fail(exc) from exc
    stop = threading.Event()
    if interval is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The canary is judged by `flywheel canary watch`; retraining does not wait for it (a newer
    # candidate that passes the gate supersedes a canary still undecided). A single run is a
    # batch job: it pushes its metrics rather than being scraped.
    with (
        serving_metrics("retrainer", metrics_port if interval is not None else None),
        CtrlC(wake=stop) as ctrl_c,
    ):
        while True:
            try:
                outcome = run_retrain(settings, stage=lambda name: console.print(f"· {name}"))
                colour = {"skipped": "yellow", "rejected": "red"}.get(outcome.status, "green")
                console.print(f"[{colour}]{outcome.status}[/{colour}]: {outcome.message}")
                if outcome.report:
                    console.print(f"report: {outcome.report}")
            except FlywheelError as exc:
                if interval is None:
                    raise fail(exc) from exc
                logger.error("retrain failed: %s", exc)
            finally:  # a failed run is what the staleness alert must see, so it pushes too
                _push_metrics(settings)
            if interval is None or stop.wait(interval):
                ctrl_c.check()  # SIGTERM ends cleanly; a swallowed Ctrl-C still exits 130
                return


def _push_metrics(settings: Settings) -> None:
    """Push the retrainer's registry to the configured Pushgateway (batch-job convention)."""
    url = settings.retrain.pushgateway_url
    if not url:
        return
    from prometheus_client import push_to_gateway

    from services.metrics import registry_for

    try:
        push_to_gateway(
            url, job="flywheel-retrainer", registry=registry_for("retrainer"), timeout=10
        )
    except OSError as exc:
        logger.warning("could not push metrics to %s: %s", url, exc)
