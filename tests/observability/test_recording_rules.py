"""The recording rules keep deployments apart: every aggregation and every join keeps
``cluster`` and ``namespace``, so dev's and prod's series (and their v3) never merge."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.promql import PROMETHEUS_DIR, merges_deployments

RECORDING = PROMETHEUS_DIR / "rules" / "recording.yml"


def recording_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RECORDING.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_merges_deployments_spots_what_drops_the_labels() -> None:
    assert merges_deployments("sum by (cluster, namespace, job) (rate(x[5m]))") == []
    assert merges_deployments("max without (instance) (x)") == []
    assert merges_deployments("sum by (job) (x)") == ["sum by (job) ("]
    assert merges_deployments("topk(1, x)") == ["topk("]
    assert merges_deployments("a and on (model_version) b") == ["on (model_version)"]
    assert merges_deployments("sum without (namespace) (x)") == ["sum without (namespace) ("]


def test_every_recording_rule_keeps_cluster_and_namespace() -> None:
    rules = recording_rules()
    assert rules
    problems = [
        f"{rule['record']}: {found}" for rule in rules for found in merges_deployments(rule["expr"])
    ]
    assert not problems, "\n".join(problems)


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def two_deployments() -> dict[str, Any]:
    """A promtool unit test: two deployments of one cluster, each with its own v1 (the
    registry numbers versions per deployment); dev moves to v2 at 30m, prod keeps v1."""
    dev, prod = {"namespace": "dev"}, {"namespace": "prod"}
    search, ingest = {"job": "flywheel-search"}, {"job": "flywheel-ingest"}
    production = {"arm": "production"}
    current = "model_version:flywheel_online_ndcg_at_10:production_current"
    previous = "model_version:flywheel_online_ndcg_at_10:production_previous"
    lag = "job:flywheel_consumer_lag_records:sum"
    errors = "job:flywheel_search_errors_per_requests:ratio_rate5m"
    requests = "flywheel_search_requests_total"

    def expect(expr: str, *samples: tuple[dict[str, str], float]) -> dict[str, Any]:
        return {
            "expr": expr,
            "eval_time": "60m",
            "exp_samples": [
                {"labels": _series(expr, labels, "")["series"], "value": value}
                for labels, value in samples
            ],
        }

    loaded, ndcg = "flywheel_model_loaded_info", "flywheel_online_ndcg_at_10"
    return {
        "rule_files": [str(RECORDING)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series(loaded, dev | {"model_version": "v1"} | production, "1x30"),
                    _series(loaded, dev | {"model_version": "v2"} | production, "_x30 1x50"),
                    _series(loaded, prod | {"model_version": "v1"} | production, "1x80"),
                    _series(ndcg, dev | {"model_version": "v1"} | production, "0.40x80"),
                    _series(ndcg, dev | {"model_version": "v2"} | production, "0.35x80"),
                    _series(ndcg, prod | {"model_version": "v1"} | production, "0.50x80"),
                    _series("flywheel_consumer_lag_records", dev | ingest, "100x80"),
                    _series("flywheel_consumer_lag_records", prod | ingest, "7x80"),
                    _series(requests, dev | search | {"status": "5xx"}, "0+10x80"),
                    _series(requests, dev | search | {"status": "2xx"}, "0+90x80"),
                    _series(requests, prod | search | {"status": "2xx"}, "0+100x80"),
                ],
                "promql_expr_test": [
                    expect(
                        current,
                        (dev | {"model_version": "v2"}, 0.35),
                        (prod | {"model_version": "v1"}, 0.50),
                    ),
                    # prod never changed version: it has no previous one, whatever dev did.
                    expect(
                        previous,
                        (dev | {"model_version": "v1", "previous_model_version": "v1"}, 0.40),
                    ),
                    expect(lag, (dev | ingest, 100), (prod | ingest, 7)),
                    expect(errors, (dev | search, 0.1), (prod | search, 0)),
                ],
            }
        ],
    }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_two_namespaces_stay_apart_in_the_recorded_series(tmp_path: Path) -> None:
    tests = tmp_path / "two-deployments.yml"
    tests.write_text(yaml.safe_dump(two_deployments()), encoding="utf-8")
    result = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
