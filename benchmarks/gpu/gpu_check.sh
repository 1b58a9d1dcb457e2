#!/usr/bin/env bash
# The GPU checks in one call (a few minutes on an H100/H200): the tests that need CUDA, then
# bench_embed.py and bench_train_step.py on the GPU; outputs go to $OUT (the device's output
# folder) or benchmarks/results/, named *_cuda.json / .txt, for commit with the GPU's name.
#
# The lent GPU machines have torch but not RDKit, and no network. Prepare once, here:
#   EXLM_DATA_DIR=../shared/data bash benchmarks/gpu/gpu_prepare.sh
# and bring .gpu/site.tar.xz and .gpu/zinc.tar.xz along: bash benchmarks/gpu/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${OUT:-benchmarks/results}
mkdir -p "$RESULTS"
source benchmarks/gpu/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu_name.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_model.py tests/test_finetune.py -k "cuda or gpu" \
    2>&1 | tee "$RESULTS/gpu_tests.txt"
python3 benchmarks/speed/bench_embed.py --device cuda --n 100000 --repeats 3 --json | tee "$RESULTS/bench_embed_cuda.txt"
tail -n 1 "$RESULTS/bench_embed_cuda.txt" > "$RESULTS/bench_embed_cuda.json"
python3 benchmarks/speed/bench_train_step.py --device cuda --batch-tokens 32768 --steps 20 --json \
    | tee "$RESULTS/bench_train_step_cuda.txt"
tail -n 1 "$RESULTS/bench_train_step_cuda.txt" > "$RESULTS/bench_train_step_cuda.json"
