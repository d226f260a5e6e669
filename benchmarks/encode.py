"""Query-encode latency (ONNX Runtime against eager PyTorch) and document encoding rate (both).

Run: make bench   (or: .venv/bin/python -m benchmarks.encode [--docs 5000] [--smoke])
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import bench_data, machine
from services.encoding.bundled import bundled_model_path
from services.encoding.onnx_splade import OnnxSpladeEncoder
from services.encoding.torch_splade import TorchSpladeEncoder, export_onnx
from services.settings import EncoderSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--smoke", action="store_true", help="a quick run on a small generated catalog (CI)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.docs, args.queries = min(args.docs, 300), min(args.queries, 100)
    cfg = EncoderSettings()
    name, products, queries = bench_data(500 if args.smoke else 20000, generated=args.smoke)
    torch_encoder = TorchSpladeEncoder.from_pretrained(
        "bundled", max_query_tokens=cfg.max_query_tokens, max_doc_tokens=cfg.max_doc_tokens
    )
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "query_encoder.onnx"
        export_onnx(torch_encoder.head.mlm, onnx_path)
        onnx_encoder = OnnxSpladeEncoder(
            onnx_path,
            bundled_model_path() / "tokenizer.json",
            max_query_tokens=cfg.max_query_tokens,
            max_doc_tokens=cfg.max_doc_tokens,
        )
        sample = queries[: args.queries]
        for q in sample[:50]:
            onnx_encoder.encode_query(q)
        latencies = []
        for q in sample:
            start = time.perf_counter()
            onnx_encoder.encode_query(q)
            latencies.append((time.perf_counter() - start) * 1000)
        torch_lat = []
        torch_sample = sample[:200]
        for q in torch_sample:
            start = time.perf_counter()
            torch_encoder.encode_query(q)
            torch_lat.append((time.perf_counter() - start) * 1000)
        texts = [p.text for p in products[: args.docs]]
        rates = {}
        for label, encoder in (("onnx", onnx_encoder), ("torch", torch_encoder)):
            start = time.perf_counter()
            encoder.encode_documents(texts, batch_size=cfg.batch_size)
            rates[label] = len(texts) / (time.perf_counter() - start)
    print(f"{machine()}; data: {name}; threads: torch={torch.get_num_threads()}")
    print(
        f"query encode (ONNX Runtime, {len(latencies)} queries): "
        f"p50 {statistics.median(latencies):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms"
    )
    print(
        f"query encode (eager PyTorch, {len(torch_sample)} queries): "
        f"p50 {statistics.median(torch_lat):.2f} ms"
    )
    for label, rate in rates.items():
        print(
            f"document encoding ({label}, {len(texts)} titles, batch {cfg.batch_size}, "
            f"max {cfg.max_doc_tokens} tokens): {rate:.0f} docs/s"
        )


if __name__ == "__main__":
    main()
