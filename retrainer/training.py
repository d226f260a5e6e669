"""Fine-tune SPLADE on (query, positive, negative) triples with sentence-transformers.

The model is SPLADE-max (Formal et al., 2021, SPLADE v2): a masked LM whose term weights are
``max_i log(1 + ReLU(logit_ij))``. The loss is ``SpladeLoss``: multiple-negatives ranking
(Henderson et al., 2017) over the positive, the hard negative and the other rows' documents,
plus FLOPS regularisers on queries and documents (Paria et al., 2020) whose weights ramp up
quadratically over the first third of the steps.

What is saved is the plain Hugging Face masked LM and tokenizer (safetensors), which
:func:`~services.encoding.torch_splade.load_mlm` and ``register_model`` take as they are.
Before returning, our serving head :class:`~services.encoding.torch_splade.SpladeHead` on the
saved files must reproduce the trained encoder's vectors, so training and serving agree.

Importing this module is cheap (no PyTorch): the data side of the retrainer imports
:class:`TrainingExample` from here.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.encoding.bundled import resolve_model
from services.errors import ModelError
from services.settings import TrainSettings

logger = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


@dataclass(slots=True)
class TrainingExample:
    """One training triple (texts, not ids) with its inverse-propensity weight."""

    query: str
    positive: str
    negative: str
    weight: float = 1.0


@dataclass(slots=True)
class TrainResult:
    """What a run did and how fast; ``loss_history`` holds (step, mean loss since the last)."""

    device: str
    examples: int
    steps: int
    seconds: float
    examples_per_second: float
    final_loss: float
    loss_history: list[tuple[int, float]] = field(default_factory=list)


def resample(
    examples: Sequence[TrainingExample], max_examples: int, seed: int
) -> list[TrainingExample]:
    """Draw the training set so that each example counts in proportion to its weight.

    ``SpladeLoss`` takes no per-sample weights, so the inverse-propensity weights (Joachims et
    al., 2017) are applied by importance resampling (Rubin, 1988): ``min(len(examples),
    max_examples)`` draws with replacement, with probability proportional to weight, from
    ``numpy.random.default_rng(seed)``. When all weights are equal the draw is made without
    replacement instead (the same distribution, no repeats).
    """
    if not examples:
        raise ModelError("No training examples; collect more feedback or add a bootstrap set.")
    weights = np.asarray([e.weight for e in examples], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ModelError(
            "Example weights must be finite, non-negative and not all zero; check the "
            "click-model propensities that produced them."
        )
    n, rng = min(len(examples), max_examples), np.random.default_rng(seed)
    if np.all(weights == weights[0]):
        picks = rng.permutation(len(examples))[:n]
    else:
        picks = rng.choice(len(examples), size=n, replace=True, p=weights / weights.sum())
    return [examples[int(i)] for i in picks]


def pick_device(cfg: TrainSettings) -> str:
    """``cfg.device``, else ``cuda`` when present, else ``cpu``."""
    import torch

    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def offline() -> Iterator[None]:
    """No network while inside: Hub and datasets offline, no telemetry, no download bars."""
    import huggingface_hub.constants as hub
    from transformers.utils import logging as hf_logging

    saved_env, saved_flag = {k: os.environ.get(k) for k in _OFFLINE_ENV}, hub.HF_HUB_OFFLINE
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    hub.HF_HUB_OFFLINE = True  # the Hub reads the variable once, at import
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_encoder(source: str, cfg: TrainSettings, device: str) -> Any:
    """``SparseEncoder([Transformer(fill-mask), SpladePooling('max', 'relu')])``.

    Pooling activation ``'relu'`` already computes ``log(1 + ReLU(x))``; ``'log1p_relu'`` would
    apply ``log1p`` twice and no longer match the serving head.
    """
    from sentence_transformers.sparse_encoder import SparseEncoder
    from sentence_transformers.sparse_encoder.model_card import SparseEncoderModelCardData
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    try:
        transformer = Transformer(
            source,
            transformer_task="fill-mask",
            query_length=cfg.max_query_tokens,
            document_length=cfg.max_doc_tokens,
            **{
                k: {"local_files_only": True}
                for k in ("model_kwargs", "processor_kwargs", "config_kwargs")
            },
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Cannot load {source!r} for training: {exc}. Give a local masked-LM folder "
            "(config.json, safetensors weights, tokenizer.json) or 'bundled'."
        ) from exc
    return SparseEncoder(
        modules=[transformer, SpladePooling(pooling_strategy="max", activation_function="relu")],
        device=device,
        model_card_data=SparseEncoderModelCardData(local_files_only=True),
    )


def build_trainer(
    encoder: Any,
    data: Sequence[TrainingExample],
    cfg: TrainSettings,
    device: str,
    scratch: Path,
    total_steps: int,
    history: list[tuple[int, float]],
    progress: Progress | None,
) -> Any:
    """``SparseEncoderTrainer`` with ``SpladeLoss(SparseMultipleNegativesRankingLoss)``: no
    evaluation, checkpoints, integrations, tqdm bars or model card; logs go to our logger."""
    import torch
    from datasets import Dataset  # type: ignore[import-untyped]
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer as Trainer
    from sentence_transformers.sparse_encoder import SparseEncoderTrainingArguments as Args
    from sentence_transformers.sparse_encoder.callbacks import (
        SpladeRegularizerWeightSchedulerCallback as RegularizerRamp,
    )
    from sentence_transformers.sparse_encoder.losses import (
        SparseMultipleNegativesRankingLoss,
        SpladeLoss,
    )
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    class QuietTrainer(Trainer):
        def add_model_card_callback(self, default_args_dict: dict[str, Any]) -> None:
            """No model card: it tokenizes sample rows and may look datasets up online."""

    class Hooks(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if progress is not None:
                progress(int(state.global_step), int(state.max_steps))

        def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            logs = kw.get("logs") or {}
            if "loss" in logs:
                step, total = int(state.global_step), int(state.max_steps)
                history.append((step, float(logs["loss"])))
                tenth = step % max(1, total // 10) == 0 or step == total
                level = logging.INFO if tenth else logging.DEBUG
                logger.log(level, "step %d/%d loss %.4f", step, total, logs["loss"])

    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    args = Args(
        output_dir=str(scratch),
        num_train_epochs=cfg.epochs,
        seed=cfg.seed,
        data_seed=cfg.seed,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=round(cfg.warmup_ratio * total_steps),
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=cuda and not bf16,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_strategy="steps",
        logging_steps=max(1, total_steps // 200),
        dataloader_num_workers=0,
        # In-batch negatives: a text repeated within a batch would be a false negative.
        batch_sampler="no_duplicates",
        # The task picks the Transformer's query_length or document_length per column.
        router_mapping={"query": "query", "positive": "document", "negative": "document"},
    )
    loss = SpladeLoss(
        encoder,
        loss=SparseMultipleNegativesRankingLoss(encoder),
        query_regularizer_weight=cfg.query_regularizer_weight,
        document_regularizer_weight=cfg.document_regularizer_weight,
    )
    columns = {c: [getattr(e, c) for e in data] for c in ("query", "positive", "negative")}
    trainer = QuietTrainer(
        model=encoder,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        loss=loss,
        callbacks=[RegularizerRamp(loss), Hooks()],
    )
    trainer.remove_callback(PrinterCallback)  # it print()s every log line
    return trainer


def full_precision(encoder: Any) -> Any:
    """``encoder`` without the autocast wrapper Accelerate puts around ``forward`` for mixed
    precision (bf16/fp16 on CUDA) and leaves in place after training: the saved weights are
    fp32, so the agreement check must run the encoder in fp32 too."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(encoder, keep_fp32_wrapper=False)


def check_agreement(encoder: Any, saved: Path, texts: Sequence[str], cfg: TrainSettings) -> float:
    """Largest gap between ``encoder``'s query/document vectors and :class:`SpladeHead` on the
    saved checkpoint; raises :class:`ModelError` above 1e-3 on a CPU, and above 1% of the
    largest weight on a GPU, whose kernels (TF32, fused attention) round differently. A wrong
    head or pooling is off by the size of the weights themselves, far beyond either bound."""
    import torch

    from services.encoding.torch_splade import SpladeHead, load_mlm

    model, tokenizer = load_mlm(str(saved))
    head, gap, largest = SpladeHead(model).to(encoder.device).eval(), 0.0, 0.0
    for task, max_len in (("query", cfg.max_query_tokens), ("document", cfg.max_doc_tokens)):
        encode = encoder.encode_query if task == "query" else encoder.encode_document
        want = encode(
            list(texts),
            convert_to_tensor=True,
            convert_to_sparse_tensor=False,
            show_progress_bar=False,
        )
        batch = tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        ).to(encoder.device)
        with torch.inference_mode():
            got = head(batch["input_ids"], batch["attention_mask"])
        gap = max(gap, float((got.float() - want.float()).abs().max()))
        largest = max(largest, float(want.float().abs().max()))
    tolerance = 1e-3 if str(encoder.device) == "cpu" else 1e-2 * max(1.0, largest)
    if gap > tolerance:
        raise ModelError(
            f"The model saved at {saved} gives vectors {gap:.2g} away from the trained encoder's; "
            "do not register it. Check the transformers version and the pooling (SPLADE-max)."
        )
    return gap


def train_splade(
    base: str | Path,
    examples: Sequence[TrainingExample],
    output_dir: Path,
    cfg: TrainSettings,
    *,
    progress: Progress | None = None,
) -> TrainResult:
    """Fine-tune the masked LM ``base`` ('bundled' or a local folder) on ``examples`` (drawn by
    :func:`resample`) and save it with its tokenizer into ``output_dir``.

    On CPU the same seed and data give identical weights; mixed precision (bf16, else fp16)
    is used on CUDA only. ``progress(step, total_steps)`` is called after every step.

    Raises:
        ModelError: no usable examples, the checkpoint cannot be loaded, or the saved model
            does not reproduce the trained encoder's vectors.
    """
    device, data = pick_device(cfg), resample(examples, cfg.max_examples, cfg.seed)
    source = resolve_model(str(base))
    total = max(1, math.ceil(cfg.epochs * math.ceil(len(data) / cfg.batch_size)))
    history: list[tuple[int, float]] = []
    with offline(), tempfile.TemporaryDirectory(prefix="flywheel-train-") as scratch:
        encoder = build_encoder(source, cfg, device)
        trainer = build_trainer(encoder, data, cfg, device, Path(scratch), total, history, progress)
        logger.info(
            "training %s on %d of %d examples: %d steps of %d on %s",
            source,
            len(data),
            len(examples),
            total,
            cfg.batch_size,
            device,
        )
        started = time.perf_counter()
        output = trainer.train()
        seconds = time.perf_counter() - started
        output_dir.mkdir(parents=True, exist_ok=True)
        encoder[0].model.save_pretrained(str(output_dir))  # safetensors, tied weights once
        encoder[0].tokenizer.save_pretrained(str(output_dir))
        probe = [t for e in data[:4] for t in (e.query, e.positive)]
        gap = check_agreement(full_precision(encoder), output_dir, probe, cfg)
    steps = int(output.global_step)
    seen = min(steps * cfg.batch_size, math.ceil(cfg.epochs * len(data)))
    final = history[-1][1] if history else float(output.training_loss)
    result = TrainResult(
        device, len(data), steps, seconds, seen / max(seconds, 1e-9), final, history
    )
    logger.info(
        "trained %d steps in %.1f s (%.1f examples/s), final loss %.4f, serving-head gap "
        "%.1g; saved to %s",
        steps,
        seconds,
        result.examples_per_second,
        final,
        gap,
        output_dir,
    )
    return result
