#!/usr/bin/env bash
# The MoleculeNet suite of the README: every set in $EXLM_DATA_DIR/moleculenet, the default
# model next to ECFP4, the random-init control (same architecture and tokenizer) and the
# plain-MLM ablation when its model exists. Re-running continues where it stopped (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EXLM_DATA_DIR:-../shared/data}
OUT=${OUT:-benchmarks/results/moleculenet}
MLM=${MLM:-runs/default/compare-mlm/model}
DATASETS=${DATASETS:-bbbp,bace,clintox,tox21,toxcast,sider,esol,freesolv,lipo}
PROBES=${PROBES:-logreg,rf,deepchem}
SEEDS=${SEEDS:-0,1,2}
features=exlm,ecfp,random
if [ -f "$MLM/config.json" ]; then
    features+=",mlm:$MLM"
fi
exlm-chem benchmark --datasets "$DATASETS" \
    --data-dir "$DATA/moleculenet" --features "$features" --probe "$PROBES" --seeds "$SEEDS" \
    --out "$OUT" --cache-dir runs/moleculenet-cache --resume

# Fine-tuning (end to end, early stopping on validation) on the small sets, for the
# transformers only; FINETUNE_SEEDS="" skips it.
FINETUNE_SEEDS=${FINETUNE_SEEDS-0,1,2}
if [ -n "$FINETUNE_SEEDS" ]; then
    exlm-chem benchmark --datasets "${FINETUNE_DATASETS:-bbbp,bace,clintox,sider,esol,freesolv}" \
        --data-dir "$DATA/moleculenet" --features "${features/ecfp,/}" --probe logreg --finetune \
        --seeds "$FINETUNE_SEEDS" --out "$OUT" --cache-dir runs/moleculenet-cache --resume
fi
