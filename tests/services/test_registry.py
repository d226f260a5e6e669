"""The model registry: immutable versions, atomic publish, hash checks, pointers."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.decisions import GateDecision
from services.errors import RegistryError
from services.registry import ModelCard, ModelRegistry, Pointers
from services.settings import GatePolicy


def passed_gate(version: str, production: str = "v1") -> GateDecision:
    """A gate decision that passed ``version`` (for tests that only move pointers)."""
    return GateDecision(
        passed=True, reasons=[], production=production, candidate=version, policy=GatePolicy()
    )


def publish_dummy(
    registry: ModelRegistry, content: bytes = b"weights", *, servable: bool = True
) -> ModelCard:
    """Publish a version; ``servable``: with a complete index and a passed gate recorded, as
    a version the retrainer rolled out has."""
    with registry.stage() as staged:
        (staged / "model.safetensors").write_bytes(content)
        (staged / "tokenizer.json").write_text("{}")
        card = registry.publish(
            staged,
            ModelCard(
                version=registry.next_version(),
                source="test",
                max_query_tokens=32,
                max_doc_tokens=64,
            ),
        )
    if servable:
        registry.record_index(card.version, points=0)
        card = registry.record_gate(card.version, passed_gate(card.version))
    return card


def test_versions_are_numbered_and_listed_in_numeric_order(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.versions() == []
    assert registry.next_version() == "v1"
    for _ in range(11):
        publish_dummy(registry)
    assert registry.versions() == [f"v{i}" for i in range(1, 12)]
    assert registry.next_version() == "v12"


def test_card_records_sha256_of_every_file(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    card = publish_dummy(registry, b"abc")
    assert card.files["model.safetensors"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert registry.card("v1") == card
    assert registry.verified_file("v1", "model.safetensors").read_bytes() == b"abc"


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish_dummy(registry)
    (registry.path("v1") / "model.safetensors").write_bytes(b"evil")
    with pytest.raises(RegistryError, match="does not match its card"):
        registry.verified_file("v1", "model.safetensors")
    with pytest.raises(RegistryError, match="no file"):
        registry.verified_file("v1", "other.bin")


def test_failed_staging_leaves_no_version_behind(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RuntimeError), registry.stage() as staged:
        (staged / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("crash mid-export")
    assert registry.versions() == []
    assert list(registry.staging_dir.iterdir()) == []


def test_published_versions_are_immutable(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish_dummy(registry)
    with registry.stage() as staged, pytest.raises(RegistryError, match="immutable"):
        registry.publish(
            staged, ModelCard(version="v1", source="x", max_query_tokens=1, max_doc_tokens=8)
        )


def test_unknown_version_error_lists_known_ones(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    publish_dummy(registry)
    with pytest.raises(RegistryError, match=r"'v9'.*known: v1"):
        registry.path("v9")


def test_pointers_track_production_history_and_refuse_unknown_versions(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.pointers() == Pointers()
    publish_dummy(registry)
    publish_dummy(registry)
    registry.set_production("v1")
    registry.write_pointers(
        registry.pointers().model_copy(update={"canary": "v2", "canary_fraction": 0.2})
    )
    pointers = registry.set_production("v2")
    assert pointers.production == "v2"
    assert pointers.history == ["v1"]
    assert pointers.canary is None and pointers.canary_fraction == 0.0
    with pytest.raises(RegistryError):
        registry.set_production("v7")
    assert registry.pointers().production == "v2"
    assert not list(tmp_path.glob(".pointers.json.*.tmp"))
