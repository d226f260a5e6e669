"""`flywheel train --dataset`: bootstrap a version from labelled data alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.registry import ModelRegistry
from services.synthetic import generate_catalog, generate_labelled_set, write_qrels_dataset

pytestmark = pytest.mark.slow


def test_train_registers_a_new_unpromoted_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel_cli.main import app

    data = write_qrels_dataset(
        generate_labelled_set(generate_catalog(200, seed=5)), tmp_path / "qrels"
    )
    for name, value in {
        "FLYWHEEL_HOME": str(tmp_path / "home"),
        "FLYWHEEL_TRAIN__MAX_EXAMPLES": "48",
        "FLYWHEEL_TRAIN__BATCH_SIZE": "8",
        "FLYWHEEL_TRAIN__MAX_DOC_TOKENS": "16",
        "FLYWHEEL_TRAIN__MAX_QUERY_TOKENS": "8",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["train", "--dataset", f"qrels:{data}"])
    assert result.exit_code == 0, result.output
    registry = ModelRegistry(tmp_path / "home" / "registry")
    assert registry.versions() == ["v1"]
    assert registry.pointers().production is None  # training never promotes by itself
    card = registry.card("v1")
    assert card.source == f"train:qrels:{data}"
    assert card.training["examples"] == 48
    assert {"model.safetensors", "query_encoder.onnx", "tokenizer.json"} <= set(card.files)
    bad = CliRunner().invoke(app, ["train", "--dataset", f"qrels:{tmp_path / 'missing'}"])
    assert bad.exit_code == 2
