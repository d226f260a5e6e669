"""Turn a PyTorch masked LM into a registry version: safetensors, tokenizer, ONNX, card."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from services.encoding.torch_splade import export_onnx, load_mlm
from services.errors import ModelError
from services.registry import ONNX_FILE, TOKENIZER_FILE, ModelCard, ModelRegistry
from services.settings import EncoderSettings

logger = logging.getLogger(__name__)


def register_model(
    registry: ModelRegistry,
    model: nn.Module,
    tokenizer: Any,
    *,
    source: str,
    encoder: EncoderSettings,
    parent: str | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> ModelCard:
    """Write weights (safetensors only), tokenizer and the ONNX query encoder into a staging
    folder, then publish them as the next version with hashes in its card."""
    with registry.stage() as staged:
        model.save_pretrained(staged, safe_serialization=True)  # type: ignore[operator]
        tokenizer.save_pretrained(staged)
        if not (staged / TOKENIZER_FILE).is_file():
            raise ModelError(f"{source!r} saved no {TOKENIZER_FILE}; a fast tokenizer is required.")
        export_onnx(model, staged / ONNX_FILE)
        card = ModelCard(
            version=registry.next_version(),
            parent=parent,
            source=source,
            max_query_tokens=encoder.max_query_tokens,
            max_doc_tokens=encoder.max_doc_tokens,
            training=training or {},
            metrics=metrics or {},
        )
        return registry.publish(staged, card)


def register_pretrained(
    registry: ModelRegistry, name_or_path: str, encoder: EncoderSettings
) -> ModelCard:
    """Register an off-the-shelf checkpoint ('bundled', a folder or a cached hub id)."""
    model, tokenizer = load_mlm(name_or_path)
    return register_model(registry, model, tokenizer, source=name_or_path, encoder=encoder)
