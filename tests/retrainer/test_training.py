"""Fine-tuning SPLADE (retrainer.training) and bootstrap triples (retrainer.bootstrap).

The training runs use the bundled 2-layer model on CPU with tiny settings (batch 8, 16
tokens), so that the whole file stays well under a minute and a half on two cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from retrainer.bootstrap import _even_shares, grade_cutoffs, labelled_examples
from retrainer.training import (
    TrainingExample,
    TrainResult,
    build_encoder,
    check_agreement,
    full_precision,
    resample,
    train_splade,
)
from services.datasets.base import LabelledSet
from services.errors import ConfigError, ModelError
from services.products import Product
from services.settings import TrainSettings
from tests.conftest import HOMEDEPOT_CSV

_NOUNS = (
    "red blue green black white steel wood brass copper plastic glass round square small large "
    "long short heavy light outdoor indoor garden kitchen bath door window wall floor roof fence "
    "lamp chair table shelf cabinet sink pipe valve hose rake shovel"
)
WORDS = _NOUNS.split()
LONG = " ".join(WORDS)  # 41 words: truncated at 16 tokens


def tiny_cfg(**overrides: object) -> TrainSettings:
    base = {"batch_size": 8, "max_query_tokens": 16, "max_doc_tokens": 16, "device": "cpu"}
    return TrainSettings.model_validate(base | {"seed": 7} | overrides)


def tiny_examples(n: int = 64) -> list[TrainingExample]:
    out = []
    for i in range(n):
        w, v = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]
        tail = f" {LONG}" if i % 5 == 0 else ""
        out.append(TrainingExample(f"{w} {v} {i}", f"{w} {v} item {i}{tail}", f"{v} part {i}"))
    return out


@dataclass
class TinyRun:
    out: Path
    result: TrainResult
    ticks: list[tuple[int, int]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    out = tmp_path_factory.mktemp("tiny") / "model"
    ticks: list[tuple[int, int]] = []
    result = train_splade(
        "bundled", tiny_examples(), out, tiny_cfg(), progress=lambda s, t: ticks.append((s, t))
    )
    return TinyRun(out, result, ticks)


# --- resampling -----------------------------------------------------------------------------


def test_resample_equal_weights_draws_without_repeats() -> None:
    examples = tiny_examples(20)
    drawn = resample(examples, 10, seed=1)
    assert len(drawn) == 10 and len({id(e) for e in drawn}) == 10
    assert resample(examples, 100, seed=1) == resample(examples, 100, seed=1)
    assert len(resample(examples, 100, seed=1)) == 20


def test_resample_follows_weights() -> None:
    heavy = TrainingExample("q", "heavy", "n", weight=9.0)
    light = TrainingExample("q", "light", "n", weight=1.0)
    zero = TrainingExample("q", "zero", "n", weight=0.0)
    drawn = resample([heavy, light, zero], 5000, seed=3)
    assert len(drawn) == 3  # min(len(examples), max_examples)
    drawn = resample([heavy, light, zero] * 1000, 3000, seed=3)
    share = sum(e.positive == "heavy" for e in drawn) / len(drawn)
    assert 0.87 < share < 0.93 and not any(e.positive == "zero" for e in drawn)


@pytest.mark.parametrize("weights", [[], [0.0, 0.0], [1.0, -1.0], [1.0, math.nan]])
def test_resample_rejects_unusable_weights(weights: list[float]) -> None:
    with pytest.raises(ModelError):
        resample([TrainingExample("q", "p", "n", w) for w in weights], 10, seed=0)


# --- a tiny run -----------------------------------------------------------------------------


def test_tiny_run_trains_and_saves_a_plain_masked_lm(tiny: TinyRun) -> None:
    from services.encoding.torch_splade import load_mlm

    r = tiny.result
    assert (r.device, r.examples, r.steps) == ("cpu", 64, 8)
    assert math.isfinite(r.final_loss) and r.final_loss > 0
    assert r.loss_history and r.loss_history[-1] == (8, r.final_loss)
    assert r.examples_per_second > 0 and r.seconds > 0
    assert tiny.ticks == [(s, 8) for s in range(1, 9)]
    files = {p.name for p in tiny.out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not files & {"pytorch_model.bin", "modules.json", "sentence_bert_config.json"}
    model, tokenizer = load_mlm(str(tiny.out))
    mlm: Any = model
    assert type(model).__name__ == "BertForMaskedLM" and tokenizer.is_fast
    # Tied embeddings survive the round trip: one tensor, decoder == word embeddings.
    assert mlm.get_output_embeddings().weight is mlm.get_input_embeddings().weight


def test_weights_changed(tiny: TinyRun) -> None:
    from safetensors.torch import load_file

    from services.encoding.bundled import bundled_model_path

    before = load_file(str(bundled_model_path() / "model.safetensors"))
    after = load_file(str(tiny.out / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before)


def test_serving_head_matches_sparse_encoder(tiny: TinyRun) -> None:
    """Our SpladeHead and the SparseEncoder give the same vectors for the saved model, long
    (truncated) texts included, and so does the serving path's TorchSpladeEncoder."""
    import numpy as np

    from services.encoding.torch_splade import TorchSpladeEncoder
    from services.sparse import SparseVec

    cfg = tiny_cfg(max_doc_tokens=24)
    texts = ["cordless drill", LONG, "zorblax widget 3/4 in. x 10 ft. copper pipe", "a"]
    encoder = build_encoder(str(tiny.out), cfg, "cpu")
    assert check_agreement(encoder, tiny.out, texts, cfg) < 1e-4
    serving = TorchSpladeEncoder.from_pretrained(
        str(tiny.out), max_query_tokens=16, max_doc_tokens=24, device="cpu"
    )
    docs = encoder.encode_document(texts, convert_to_tensor=True, convert_to_sparse_tensor=False)
    for got, want in zip(serving.encode_documents(texts), docs.numpy(), strict=True):
        ref = SparseVec.from_dense(want)
        assert np.array_equal(got.indices, ref.indices)
        assert np.allclose(got.values, ref.values, atol=1e-4)


def test_agreement_check_catches_a_different_pooling(tiny: TinyRun) -> None:
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    encoder = build_encoder(str(tiny.out), tiny_cfg(), "cpu")
    double_log = SparseEncoder(modules=[encoder[0], SpladePooling("max", "log1p_relu")])
    with pytest.raises(ModelError, match="do not register"):
        check_agreement(double_log, tiny.out, ["cordless drill"], tiny_cfg())


def test_agreement_is_checked_in_full_precision_after_mixed_precision_training(
    tiny: TinyRun,
) -> None:
    """Accelerate wraps ``forward`` in autocast for bf16/fp16 training (on CUDA) and leaves the
    wrapper on; the check must compare the fp32 weights in fp32 (CPU bf16 autocast stands in)."""
    from types import MethodType

    import torch
    from accelerate.utils import convert_outputs_to_fp32

    encoder = build_encoder(str(tiny.out), tiny_cfg(), "cpu")
    encoder._original_forward = encoder.forward  # what Accelerator.prepare_model does
    autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    encoder.forward = MethodType(
        convert_outputs_to_fp32(autocast(encoder.forward.__func__)), encoder
    )
    texts = ["cordless drill 20v", "brushed nickel kitchen faucet with sprayer"]
    with pytest.raises(ModelError, match="do not register"):
        check_agreement(encoder, tiny.out, texts, tiny_cfg())
    assert check_agreement(full_precision(encoder), tiny.out, texts, tiny_cfg()) <= 1e-4


def test_missing_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="local masked-LM folder"):
        train_splade(tmp_path / "nope", tiny_examples(8), tmp_path / "out", tiny_cfg())


@pytest.mark.slow
def test_same_seed_same_weights(tiny: TinyRun, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    again = train_splade("bundled", tiny_examples(), tmp_path / "again", tiny_cfg())
    assert again.loss_history == tiny.result.loss_history
    first = load_file(str(tiny.out / "model.safetensors"))
    second = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)


@pytest.mark.slow
def test_learns_a_new_association(tmp_path: Path) -> None:
    """'zorblax' means 'widget': an association the base model lacks, learnt in 8 steps and
    carried over to nouns never trained on."""
    from services.encoding.torch_splade import TorchSpladeEncoder

    seen, unseen = WORDS[:32], WORDS[32:]
    examples = [TrainingExample(f"zorblax {w}", f"{w} widget", f"{w} hammer") for w in seen]
    cfg = tiny_cfg(batch_size=16, epochs=4.0, learning_rate=2e-4, warmup_ratio=0.0)

    def scores(model: str) -> list[tuple[float, float]]:
        enc = TorchSpladeEncoder.from_pretrained(model, max_query_tokens=16, device="cpu")
        out = []
        for w in [*unseen, ""]:
            query = enc.encode_query(f"zorblax {w}".strip())
            pos, neg = enc.encode_documents([f"{w} widget".strip(), f"{w} hammer".strip()])
            out.append((query.dot(pos), query.dot(neg)))
        return out

    before = scores("bundled")
    train_splade("bundled", examples, tmp_path / "m", cfg)
    after = scores(str(tmp_path / "m"))
    for (pos0, neg0), (pos1, neg1) in zip(before, after, strict=True):
        assert pos1 > pos0 and pos1 > neg1
        assert pos1 - neg1 > (pos0 - neg0) + 1.0


# --- bootstrap triples ----------------------------------------------------------------------


def labelled(name: str = "toy", max_grade: int = 6) -> LabelledSet:
    products = [Product(f"p{i}", f"title {i}") for i in range(8)] + [Product("p8", "title 0")]
    queries = {"a": "Angle  Bracket", "b": "deck over", "c": "fan", "d": "lamp", "e": "twin"}
    qrels = {
        "a": {"p0": 6, "p1": 5, "p2": 2, "p3": 4},  # two positives, one negative
        "b": {"p4": 6, "p5": 0, "p6": 1},  # one positive, two negatives
        "c": {"p7": 6, "p6": 3},  # no judged negative: skipped
        "d": {"p2": 1},  # no positive
        "e": {"p0": 6, "p8": 0},  # the only negative has the positive's title: skipped
    }
    return LabelledSet(name, products, queries, qrels, max_grade)


def test_default_cutoffs_follow_max_grade() -> None:
    assert grade_cutoffs(labelled()) == (5, 2)  # Home Depot: relevance >= 2.67 / <= 1.67
    assert grade_cutoffs(labelled(max_grade=3)) == (3, 1)  # ESCI
    assert grade_cutoffs(labelled(max_grade=2)) == (2, 0)  # WANDS
    with pytest.raises(ConfigError, match="neg_max_grade < pos_min_grade"):
        grade_cutoffs(labelled(), pos_min_grade=3, neg_max_grade=3)


def test_triples_pair_positives_with_negatives_of_the_same_query() -> None:
    got = labelled_examples(labelled(), max_examples=100, seed=0)
    triples = {(e.query, e.positive, e.negative) for e in got}
    assert triples == {
        ("angle bracket", "title 0", "title 2"),
        ("angle bracket", "title 1", "title 2"),
        ("deck over", "title 4", "title 5"),
    } or triples == {
        ("angle bracket", "title 0", "title 2"),
        ("angle bracket", "title 1", "title 2"),
        ("deck over", "title 4", "title 6"),
    }
    assert labelled_examples(labelled(), max_examples=100, seed=0) == got
    assert len(labelled_examples(labelled(), max_examples=2, seed=0)) == 2
    lenient = labelled_examples(labelled(), max_examples=100, seed=0, pos_min_grade=3)
    assert {e.query for e in lenient} == {"angle bracket", "deck over"}
    assert len(lenient) == 4  # p3 (grade 4) joins; 'fan' still has no negative


def test_excluded_queries_are_never_used() -> None:
    got = labelled_examples(labelled(), max_examples=100, seed=0, exclude_queries={"ANGLE bracket"})
    assert {e.query for e in got} == {"deck over"}


def test_several_sets_mix_evenly() -> None:
    assert _even_shares([10, 100, 100], 90) == [10, 40, 40]
    assert _even_shares([50, 50], 7) == [4, 3] or _even_shares([50, 50], 7) == [3, 4]
    assert _even_shares([1, 2], 10) == [1, 2]
    big = LabelledSet(
        "big",
        [Product(f"x{i}", f"thing {i}") for i in range(40)],
        {f"q{i}": f"query {i}" for i in range(20)},
        {f"q{i}": {f"x{2 * i}": 6, f"x{2 * i + 1}": 0} for i in range(20)},
        6,
    )
    got = labelled_examples([labelled(), big], max_examples=10, seed=1)
    assert len(got) == 10
    assert sum(e.positive.startswith("title") for e in got) == 3  # all the small set has


@pytest.mark.data
def test_homedepot_triples_respect_the_grades() -> None:
    if not HOMEDEPOT_CSV.is_file():
        pytest.skip(f"{HOMEDEPOT_CSV} is absent")
    from services.datasets.loader import load_dataset
    from services.datasets.protocol import query_id

    ls = load_dataset(f"homedepot:{HOMEDEPOT_CSV}")
    text = {p.id: p.text for p in ls.products}
    got = labelled_examples(ls, max_examples=500, seed=2, exclude_queries={"angle bracket"})
    assert len(got) == 500
    for e in got:
        grades = [(text[pid], g) for pid, g in ls.qrels[query_id(e.query)].items()]
        assert any(t == e.positive and g >= 5 for t, g in grades)  # titles are not unique
        assert any(t == e.negative and g <= 2 for t, g in grades)
        assert e.query != "angle bracket" and e.positive != e.negative
