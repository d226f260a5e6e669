"""SPLADE on ONNX Runtime: the serving-path encoder, with no PyTorch.

Reads a version's ``query_encoder.onnx`` (masked LM with the SPLADE max pooling inside the
graph, see :func:`services.encoding.torch_splade.export_onnx`) and its ``tokenizer.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from services.encoding.base import ProgressFn, length_sorted_batches
from services.errors import ModelError
from services.sparse import SparseVec


def _tokenizer(path: Path, max_length: int) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if threads == 1:
        # Serving runs one small query per request thread: spinning worker threads would only
        # steal CPU from the other requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(
            f"Cannot load the ONNX encoder {path}: {exc}. Re-register the version (its ONNX "
            "graph is exported when it is registered)."
        ) from exc


class OnnxSpladeEncoder:
    """SPLADE encoder running an exported graph on ONNX Runtime."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        *,
        max_query_tokens: int = 32,
        max_doc_tokens: int = 64,
        threads: int = 0,
    ) -> None:
        for required in (onnx_path, tokenizer_path):
            if not required.is_file():
                raise ModelError(
                    f"Missing encoder file {required}; re-register this model version."
                )
        self.session = _session(onnx_path, threads)
        # One tokenizer per truncation length: Tokenizer settings are shared state, and
        # concurrent requests must never see each other's.
        self.query_tokenizer = _tokenizer(tokenizer_path, max_query_tokens)
        self.doc_tokenizer = _tokenizer(tokenizer_path, max_doc_tokens)

    def _run(self, encodings: Sequence[Encoding]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        (weights,) = self.session.run(["weights"], {"input_ids": ids, "attention_mask": mask})
        return weights  # type: ignore[no-any-return]

    def encode_query(self, text: str) -> SparseVec:
        """One query, truncated to ``max_query_tokens``."""
        return SparseVec.from_dense(self._run([self.query_tokenizer.encode(text)])[0])

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> list[SparseVec]:
        """Documents in length-sorted batches, returned in input order."""
        encodings = self.doc_tokenizer.encode_batch(list(texts))
        out: list[SparseVec] = [SparseVec.from_lists([], [])] * len(texts)
        for idx in length_sorted_batches([len(e.ids) for e in encodings], batch_size):
            dense = self._run([encodings[i] for i in idx])
            for row, i in zip(dense, idx, strict=True):
                out[i] = SparseVec.from_dense(row)
            if progress:
                progress(len(idx))
        return out
