"""Encoders of registered model versions."""

from __future__ import annotations

from services.encoding.onnx_splade import OnnxSpladeEncoder
from services.registry import ONNX_FILE, TOKENIZER_FILE, ModelRegistry


def onnx_encoder(registry: ModelRegistry, version: str, *, threads: int = 0) -> OnnxSpladeEncoder:
    """A version's ONNX encoder (files checked against the card's sha256), with the token limits
    the version was registered with."""
    card = registry.card(version)
    return OnnxSpladeEncoder(
        registry.verified_file(version, ONNX_FILE),
        registry.verified_file(version, TOKENIZER_FILE),
        max_query_tokens=card.max_query_tokens,
        max_doc_tokens=card.max_doc_tokens,
        threads=threads,
    )
