#!/usr/bin/env bash
# ExLM (k = 4) and plain MLM (the paper's "MLM++"), `small` preset, same seed, batch, learning
# rate and training-time budget, on MOSES-train, validated on MOSES-test. Both run at the same
# time, so that they share the machine alike. Each first takes three steps and a validation, so
# a broken set-up fails in seconds. Logs and curves go to $RESULTS.
#
# Defaults: the 20-minute CPU comparison (one thread each); benchmarks/quality/pretrain_default.sh sets
# the GPU pair behind the shipped model.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
BUDGET=${BUDGET:-20m}
BATCH_TOKENS=${BATCH_TOKENS:-6144}
LR=${LR:-1e-3}
THREADS=${THREADS:-1}
LOG_EVERY=${LOG_EVERY:-25}
VAL_EVERY=${VAL_EVERY:-250}
RUNS=${RUNS:-runs}
RESULTS=${RESULTS:-benchmarks/results/pretrain_compare}
mkdir -p "$RUNS" "$RESULTS"
pretrain() {  # objective, output folder, further flags
    local objective=$1 out=$2
    shift 2
    local extra=(--objective "$objective")
    [ "$objective" = exlm ] && extra+=(--k 4)
    exlm-chem pretrain --corpus "$DATA/zinc/moses_train.csv.gz" --val-corpus "$DATA/zinc/moses_test.csv.gz" \
        --corpus-cache runs/corpus-cache --out "$out" "${extra[@]}" --preset small --seed 0 \
        --batch-tokens "$BATCH_TOKENS" --lr "$LR" --threads "$THREADS" "$@"
}
for objective in exlm mlm; do
    rm -rf "$RUNS/smoke-$objective"
    pretrain $objective "$RUNS/smoke-$objective" --max-steps 3 --val-every 3 > "$RUNS/smoke-$objective.log" 2>&1 \
        || { cat "$RUNS/smoke-$objective.log"; exit 1; }
done
for objective in exlm mlm; do
    pretrain $objective "$RUNS/compare-$objective" --max-time "$BUDGET" --log-every "$LOG_EVERY" --val-every "$VAL_EVERY" \
        --checkpoint-every "$VAL_EVERY" > "$RUNS/compare-$objective.log" 2>&1 &
done
wait
for objective in exlm mlm; do
    cp "$RUNS/compare-$objective/metrics.jsonl" "$RESULTS/$objective-metrics.jsonl"
    cp "$RUNS/compare-$objective/run.json" "$RESULTS/$objective-run.json"
    cp "$RUNS/compare-$objective/curves.png" "$RESULTS/$objective-curves.png"
done
python -c "
from exlm_chem.training.runlog import plot_curves
plot_curves(['$RESULTS/exlm-metrics.jsonl', '$RESULTS/mlm-metrics.jsonl'], '$RESULTS/exlm-vs-mlm.png', labels=['ExLM k=4', 'MLM'])
"
