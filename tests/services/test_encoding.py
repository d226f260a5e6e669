"""SPLADE encoders: ONNX Runtime and PyTorch agree; batching keeps order; truncation holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.encoding.base import length_sorted_batches
from services.encoding.bundled import bundled_model_path, resolve_model
from services.encoding.onnx_splade import OnnxSpladeEncoder
from services.encoding.torch_splade import TorchSpladeEncoder, export_onnx
from services.errors import ModelError
from services.sparse import SparseVec

TEXTS = [
    "cordless drill 18v",
    "Simpson Strong-Tie 12-Gauge Angle",
    "brushed nickel kitchen faucet with pull-down sprayer and soap dispenser, 1.8 gpm",
    "x",
    "BEHR Premium Plus 1 gal. #PPU18-06 Ultra Pure White Eggshell Enamel Interior Paint " * 6,
]


@pytest.fixture(scope="module")
def encoders(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TorchSpladeEncoder, OnnxSpladeEncoder]:
    torch_encoder = TorchSpladeEncoder.from_pretrained(
        "bundled", max_query_tokens=16, max_doc_tokens=24
    )
    onnx_path = tmp_path_factory.mktemp("onnx") / "query_encoder.onnx"
    export_onnx(torch_encoder.head.mlm, onnx_path)
    onnx_encoder = OnnxSpladeEncoder(
        onnx_path, bundled_model_path() / "tokenizer.json", max_query_tokens=16, max_doc_tokens=24
    )
    return torch_encoder, onnx_encoder


def assert_same(a: SparseVec, b: SparseVec) -> None:
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_onnx_and_pytorch_queries_agree(
    encoders: tuple[TorchSpladeEncoder, OnnxSpladeEncoder],
) -> None:
    torch_encoder, onnx_encoder = encoders
    for text in TEXTS:
        assert_same(onnx_encoder.encode_query(text), torch_encoder.encode_query(text))


@pytest.mark.slow
def test_onnx_and_pytorch_documents_agree_in_input_order(
    encoders: tuple[TorchSpladeEncoder, OnnxSpladeEncoder],
) -> None:
    torch_encoder, onnx_encoder = encoders
    from_onnx = onnx_encoder.encode_documents(TEXTS, batch_size=2)
    from_torch = torch_encoder.encode_documents(TEXTS, batch_size=3)
    assert len(from_onnx) == len(from_torch) == len(TEXTS)
    for text, a, b in zip(TEXTS, from_onnx, from_torch, strict=True):
        assert_same(a, b)
        # Batched and padded encoding gives the vector the text gets alone.
        assert_same(a, onnx_encoder.encode_documents([text])[0])


@pytest.mark.slow
def test_splade_vectors_are_sparse_positive_and_lexical(
    encoders: tuple[TorchSpladeEncoder, OnnxSpladeEncoder],
) -> None:
    _, onnx_encoder = encoders
    vec = onnx_encoder.encode_query("cordless drill")
    assert 0 < len(vec) < 200
    assert (vec.values > 0).all()
    drill_id = onnx_encoder.query_tokenizer.token_to_id("drill")
    assert drill_id in set(vec.indices.tolist())


@pytest.mark.slow
def test_query_truncation_limits_tokens(
    encoders: tuple[TorchSpladeEncoder, OnnxSpladeEncoder],
) -> None:
    _, onnx_encoder = encoders
    long_text = " ".join(f"word{i}" for i in range(200))
    assert len(onnx_encoder.query_tokenizer.encode(long_text).ids) == 16


def test_length_sorted_batches_cover_every_index_once() -> None:
    lengths = [5, 1, 9, 3, 9, 2, 7]
    batches = list(length_sorted_batches(lengths, 3))
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert [len(b) for b in batches] == [3, 3, 1]


def test_bundled_model_is_found_without_importing_cognition() -> None:
    import sys

    path = bundled_model_path()
    assert (path / "config.json").is_file()
    assert (path / "tokenizer.json").is_file()
    assert resolve_model("bundled") == str(path)
    assert resolve_model("/some/path") == "/some/path"
    assert "cognition" not in sys.modules


def test_missing_checkpoint_gives_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="masked-LM checkpoint"):
        TorchSpladeEncoder.from_pretrained(str(tmp_path / "nowhere"))


def test_missing_onnx_file_gives_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="re-register"):
        OnnxSpladeEncoder(tmp_path / "missing.onnx", tmp_path / "tokenizer.json")


def test_sparse_vec_dot_and_from_dense() -> None:
    dense = np.array([0.0, 1.5, 0.0, 2.0], dtype=np.float32)
    a = SparseVec.from_dense(dense)
    assert a.indices.tolist() == [1, 3]
    b = SparseVec.from_lists([3, 0], [0.5, 9.0])
    assert b.indices.tolist() == [0, 3]
    assert a.dot(b) == pytest.approx(1.0)
    assert a.dot(SparseVec.from_lists([2], [1.0])) == 0.0
