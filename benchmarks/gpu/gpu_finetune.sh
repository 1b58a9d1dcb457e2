#!/usr/bin/env bash
# The MoleculeNet suite's fine-tuning (moleculenet.sh, PARTS=finetune) on a GPU for at most
# $BUDGET seconds: each set of $FINETUNE_DATASETS in a process of its own, all at once, with
# its own number of runs at a time on the one device ($JOBS: "toxcast:16,lipo:8"; a set not
# named gets $FINETUNE_JOBS). Side by side because one run's small batches leave the GPU
# mostly idle and a set's second batch of runs (the other seeds) waits for its first (the
# grid). Under CUDA's multi-process service where it starts, so that the runs' kernels share
# the GPU at once instead of taking turns. Each set's finished runs are kept in a copy of the
# suite's finetune_runs.json, copied to $OUT as finetune_runs_SET.json every 5 s, so that a
# call stopped at its time limit still brings back what finished; logs and the GPU's name too.
#
# DEVICE=cpu (with a stand-in nvidia-smi on PATH) runs the same script on a CPU, as a dry run.
#
# Prepare once, here: EXLM_DATA_DIR=../shared/data bash benchmarks/gpu/gpu_prepare.sh
# On the GPU machine, with .gpu/site.tar.xz and .gpu/moleculenet.tar.xz:
#   BUDGET=420 FINETUNE_DATASETS=toxcast JOBS=toxcast:22 bash benchmarks/gpu/gpu_finetune.sh
# (in a call of 600 s: unpacking, imports and stopping the workers take about 130 s more)
# Back here: stop the CPU suite if it runs (it rewrites finetune_runs.json), merge each file:
#   python benchmarks/gpu/merge_finetune_runs.py FETCHED/finetune_runs_toxcast.json \
#       benchmarks/results/moleculenet_v2protocol/finetune_runs.json
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${OUT:-runs/gpu_finetune}
SUITE=benchmarks/results/moleculenet_v2protocol
DATASETS=${FINETUNE_DATASETS:-toxcast}
BUDGET=${BUDGET:-420}
mkdir -p "$RESULTS"
source benchmarks/gpu/gpu_env.sh
# Fine-tuning needs none of DeepChem's optional model families; the GPU image's versions of
# some (transformers, lightning, torch_geometric, jax) are newer than DeepChem 2.8 knows, and
# an error other than ModuleNotFoundError while importing them stops `import deepchem`. These
# stand-ins raise ModuleNotFoundError, so DeepChem skips them as on a machine without them.
blocked=$gpu_root/blocked
mkdir -p "$blocked"
for module in transformers lightning pytorch_lightning torch_geometric jax; do
    echo "raise ModuleNotFoundError('$module is left out for DeepChem 2.8 here')" >"$blocked/$module.py"
done
export PYTHONPATH=$blocked:$PYTHONPATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu_name.txt"
python3 -c "import deepchem, rdkit, selfies, torch, exlm_chem.moleculenet.suite; print('torch', torch.__version__, 'deepchem', deepchem.__version__)"

export CUDA_MPS_PIPE_DIRECTORY=$gpu_root/mps CUDA_MPS_LOG_DIRECTORY=$gpu_root/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if nvidia-cuda-mps-control -d 2>/dev/null &&
    timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
    echo "CUDA multi-process service: on" | tee -a "$RESULTS/gpu_name.txt"
else
    echo quit | nvidia-cuda-mps-control 2>/dev/null || true
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "CUDA multi-process service: off" | tee -a "$RESULTS/gpu_name.txt"
fi

jobs_for() {
    local pair
    for pair in ${JOBS//,/ }; do
        [ "${pair%%:*}" = "$1" ] && { echo "${pair##*:}"; return; }
    done
    echo "${FINETUNE_JOBS:-8}"
}
snapshot() {
    local name
    for name in ${DATASETS//,/ }; do
        cp "$gpu_root/finetune-$name/finetune_runs.json" "$RESULTS/.finetune_runs_$name.json"
        mv "$RESULTS/.finetune_runs_$name.json" "$RESULTS/finetune_runs_$name.json"
    done
}
pids=()
for name in ${DATASETS//,/ }; do
    work=$gpu_root/finetune-$name
    mkdir -p "$work"
    cp "$SUITE/finetune_runs.json" "$work/"
    # INT, as Ctrl-C: the command stops its workers; what finished is already on disk.
    OUT=$work PARTS=finetune DEVICE=${DEVICE:-cuda} FINETUNE_JOBS=$(jobs_for "$name") CHOICE_SEEDS=0,1 \
        MLM=benchmarks/results/default_model_v2/mlm-model FINETUNE_DATASETS=$name \
        timeout --signal INT "$BUDGET" bash benchmarks/quality/moleculenet.sh \
        >"$RESULTS/gpu_finetune_$name.log" 2>&1 &
    pids+=($!)
done
while kill -0 "${pids[@]}" 2>/dev/null; do
    sleep 5
    snapshot
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || { code=$?; [ "$code" -eq 124 ] || status=$code; }
done
snapshot
echo quit | nvidia-cuda-mps-control 2>/dev/null || true
echo "done (status $status); stopped at the budget of $BUDGET s where a log ends without results"
exit "$status"
