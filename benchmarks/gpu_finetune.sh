#!/usr/bin/env bash
# The MoleculeNet suite's fine-tuning (moleculenet.sh, PARTS=finetune) on a GPU, $FINETUNE_JOBS
# runs at a time on the device, for at most $BUDGET seconds, largest sets first (the CPU suite
# takes the smallest first, so the two meet in the middle). Every finished run is kept in
# finetune_runs.json, which goes to $OUT with the log and the GPU's name.
#
# Prepare once, here: EXLM_DATA_DIR=../shared/data bash benchmarks/gpu_prepare.sh
# On the GPU machine, with .gpu/site.tar.xz and .gpu/moleculenet.tar.xz:
#   BUDGET=480 FINETUNE_JOBS=12 bash benchmarks/gpu_finetune.sh
# Back here: stop the CPU suite if it runs (it rewrites finetune_runs.json), merge, restart it:
#   python benchmarks/merge_finetune_runs.py FETCHED/finetune_runs.json \
#       benchmarks/results/moleculenet_v2protocol/finetune_runs.json
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-runs/gpu_finetune}
SUITE=benchmarks/results/moleculenet_v2protocol
mkdir -p "$RESULTS"
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$RESULTS/gpu_name.txt"
status=0
# INT, as Ctrl-C: the command stops its workers; what finished is already on disk.
OUT=$SUITE PARTS=finetune DEVICE=cuda FINETUNE_JOBS=${FINETUNE_JOBS:-12} CHOICE_SEEDS=0,1 \
    MLM=benchmarks/results/default_model_v2/mlm-model \
    FINETUNE_DATASETS=${FINETUNE_DATASETS:-toxcast,tox21,lipo,bbbp,sider,clintox,bace,esol,freesolv} \
    timeout --signal INT "${BUDGET:-480}" bash benchmarks/moleculenet.sh 2>&1 \
    | tee "$RESULTS/gpu_finetune.log" || status=$?
cp "$SUITE/finetune_runs.json" "$RESULTS/"
if [ "$status" -eq 124 ]; then
    echo "stopped at the budget of ${BUDGET:-480} s: the runs finished so far are kept"
    status=0
fi
exit "$status"
