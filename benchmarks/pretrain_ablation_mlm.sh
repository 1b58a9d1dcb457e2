#!/usr/bin/env bash
# The ablation of the default model: a plain-MLM model (the paper's "MLM++") with the same
# preset, corpus, learning rate, seed and wall-clock budget as benchmarks/pretrain_default.sh.
# Not shipped: its model stays in $RUN/model, its logs are copied to
# benchmarks/results/ablation_mlm/. Re-running continues an interrupted run.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUN=${RUN:-runs/ablation-mlm-small}
BUDGET=${BUDGET:-4h}
LR=${LR:-1e-3}
args=(--corpus "$DATA/zinc/moses_train.csv.gz" --val-corpus "$DATA/zinc/moses_test.csv.gz" --out "$RUN"
      --corpus-cache runs/corpus-cache --objective mlm --preset small --lr "$LR" --max-time "$BUDGET"
      --seed 0 --log-every 50 --val-every 500 --checkpoint-every 200)
if compgen -G "$RUN/checkpoints/step-*.pt" > /dev/null; then
    args+=(--resume)
fi
exlm-chem pretrain "${args[@]}"
mkdir -p benchmarks/results/ablation_mlm
cp "$RUN/metrics.jsonl" "$RUN/run.json" "$RUN/curves.png" benchmarks/results/ablation_mlm/
