"""SPLADE on PyTorch: any Hugging Face masked-LM checkpoint as a sparse encoder.

SPLADE (Formal et al., 2021; SPLADE v2, 2021) weights each vocabulary term ``j`` of a text as
``max_i log(1 + ReLU(logit_ij))`` over its tokens ``i``. Because ``log(1 + ReLU(x))`` is
monotone, the max is taken on the raw logits first and the activation applied once per term,
which is exact and saves a pass over the (tokens × 30,522) logits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.jit import TracerWarning  # type: ignore[attr-defined]

from services.encoding.base import ProgressFn, length_sorted_batches
from services.encoding.bundled import resolve_model
from services.errors import ModelError
from services.sparse import SparseVec

logger = logging.getLogger(__name__)


class SpladeHead(nn.Module):
    """Masked LM plus SPLADE max pooling: (input_ids, attention_mask) -> (batch, vocab)."""

    def __init__(self, mlm: nn.Module) -> None:
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        masked = logits.masked_fill(attention_mask.unsqueeze(-1) == 0, float("-inf"))
        return torch.log1p(torch.relu(masked.amax(dim=1)))


def load_mlm(name_or_path: str) -> tuple[nn.Module, Any]:
    """Load a masked LM and its tokenizer from a local folder or the local Hugging Face cache.

    Never downloads: Flywheel runs without network access to model hubs.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # ours say enough

    source = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForMaskedLM.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Cannot load a masked-LM checkpoint from {source!r}: {exc}. Give a local folder "
            "with config.json, weights and tokenizer files, or 'bundled'."
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"{source!r} has no fast tokenizer (tokenizer.json); ONNX serving needs one."
        )
    return model.eval(), tokenizer


class TorchSpladeEncoder:
    """SPLADE encoder on eager PyTorch (CPU or GPU)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        max_query_tokens: int = 32,
        max_doc_tokens: int = 64,
        device: str | None = None,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.head = SpladeHead(model).to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_query_tokens = max_query_tokens
        self.max_doc_tokens = max_doc_tokens

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> TorchSpladeEncoder:
        """Load ``name_or_path`` ('bundled', a folder, or a cached hub id)."""
        model, tokenizer = load_mlm(name_or_path)
        return cls(model, tokenizer, **kwargs)

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        out = self.head(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))
        return out.float().cpu().numpy()  # type: ignore[no-any-return]

    def encode_query(self, text: str) -> SparseVec:
        """One query, truncated to ``max_query_tokens``."""
        return SparseVec.from_dense(self._encode([text], self.max_query_tokens)[0])

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> list[SparseVec]:
        """Documents in length-sorted batches, returned in input order."""
        lengths = [
            len(ids)
            for ids in self.tokenizer(list(texts), truncation=True, max_length=self.max_doc_tokens)[
                "input_ids"
            ]
        ]
        out: list[SparseVec | None] = [None] * len(texts)
        for idx in length_sorted_batches(lengths, batch_size):
            dense = self._encode([texts[i] for i in idx], self.max_doc_tokens)
            for row, i in zip(dense, idx, strict=True):
                out[i] = SparseVec.from_dense(row)
            if progress:
                progress(len(idx))
        return [v for v in out if v is not None]


def export_onnx(model: nn.Module, path: Path, *, opset: int = 17) -> None:
    """Export the masked LM with SPLADE pooling inside the graph to a single ONNX file.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch × tokens, both axes dynamic);
    output ``weights`` (float32, batch × vocab).
    """
    head = SpladeHead(model).cpu().eval()
    dummy = torch.ones((2, 8), dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns about shape-dependent Python branches in BERT's masking code; they take
    # the same branch for every (batch, tokens) shape, which the ONNX/PyTorch agreement tests
    # check over varied shapes.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=TracerWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            head,
            (dummy, dummy),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["weights"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "weights": {0: "batch"},
            },
            opset_version=opset,
            dynamo=False,
        )
    logger.info("exported SPLADE ONNX graph to %s", path)
