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


class VersionEncoders:
    """Query encoders of registered versions, each loaded (and hash-checked) once.

    One thread per encoder: callers encode many queries in parallel instead
    (:func:`services.evaluation.runner.encode_all`), as concurrent requests do in the server.
    """

    def __init__(self, registry: ModelRegistry, *, threads: int = 1) -> None:
        self.registry = registry
        self.threads = threads
        self._loaded: dict[str, OnnxSpladeEncoder] = {}

    def __call__(self, version: str) -> OnnxSpladeEncoder:
        if version not in self._loaded:
            self._loaded[version] = onnx_encoder(self.registry, version, threads=self.threads)
        return self._loaded[version]
