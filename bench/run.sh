#!/usr/bin/env bash
# The benchmark of docs/benchmarks.md: Fashion-MNIST, 500 training images per class, the full t10k test set,
# and all 60,000 training images for the memory-growth check (skip it with LARGE=0).
# Usage: bench/run.sh [work folder, default /tmp/retrain-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/retrain-bench}
PYTHON=${PYTHON:-.venv/bin/python}
SOURCE=/usr/share/datasets/fashion-mnist

if [ ! -f "$SOURCE/train-images-idx3-ubyte.gz" ]; then
    echo "installing Debian's dataset-fashion-mnist" >&2
    SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

mkdir -p "$WORK"
# The image folders are rebuilt only when missing: writing 70,000 PNGs takes a minute.
[ -d "$WORK/train-5k" ] || "$PYTHON" bench/fashion_mnist.py --split train --per-class 500 --out "$WORK/train-5k"
[ -d "$WORK/t10k" ] || "$PYTHON" bench/fashion_mnist.py --split t10k --out "$WORK/t10k"
LARGE_ARGS=()
if [ "${LARGE:-1}" != 0 ]; then
    [ -d "$WORK/train-60k" ] || "$PYTHON" bench/fashion_mnist.py --split train --out "$WORK/train-60k"
    LARGE_ARGS=(--large "$WORK/train-60k")
fi

{
    echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM," \
         "$(lscpu | grep -o -E 'avx512(f|_bf16|_vnni)|amx_[a-z0-9]+' | sort -u | tr '\n' ' ')"
    echo "tensorflow $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')," \
         "ai-edge-litert $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("ai-edge-litert"))')"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$PYTHON" bench/bench.py --train "$WORK/train-5k" --test "$WORK/t10k" "${LARGE_ARGS[@]}" \
        --work "$WORK/runs" --json "$WORK/results.json"
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$WORK/report.md"
