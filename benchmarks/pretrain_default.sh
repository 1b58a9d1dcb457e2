#!/usr/bin/env bash
# Reproduce the shipped default model from scratch: ExLM (k = 4), `small` preset, pretrained
# on MOSES-train and validated on MOSES-test, then exported into exlm_chem/weights/ with its
# model card and the run's logs copied to benchmarks/results/default_model/.
# Re-running continues an interrupted run from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUN=${RUN:-runs/default-exlm-small}
BUDGET=${BUDGET:-4h}
LR=${LR:-1e-3}
args=(--corpus "$DATA/zinc/moses_train.csv.gz" --val-corpus "$DATA/zinc/moses_test.csv.gz" --out "$RUN"
      --corpus-cache runs/corpus-cache --objective exlm --k 4 --preset small --lr "$LR" --max-time "$BUDGET"
      --seed 0 --log-every 50 --val-every 500 --checkpoint-every 200)
if compgen -G "$RUN/checkpoints/step-*.pt" > /dev/null; then
    args+=(--resume)
fi
exlm-chem pretrain "${args[@]}"
exlm-chem export "$RUN" --to exlm_chem/weights
mkdir -p benchmarks/results/default_model
cp "$RUN/metrics.jsonl" "$RUN/run.json" "$RUN/curves.png" benchmarks/results/default_model/
