#!/usr/bin/env bash
# ExLM (k = 4) and plain MLM, `small` preset, same seed and the same training-time budget,
# on MOSES-train, validated on MOSES-test. Both run at the same time with one thread each,
# so that they share the machine alike. Logs and curves go to benchmarks/results/pretrain_compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EXLM_DATA_DIR:-../shared/data}
BUDGET=${BUDGET:-20m}
RUNS=${RUNS:-runs}
RESULTS=benchmarks/results/pretrain_compare
mkdir -p "$RUNS" "$RESULTS"
for objective in exlm mlm; do
    exlm-chem pretrain --corpus "$DATA/zinc/moses_train.csv.gz" --val-corpus "$DATA/zinc/moses_test.csv.gz" \
        --out "$RUNS/compare-$objective" --corpus-cache "$RUNS/corpus-cache" --objective "$objective" \
        --preset small --max-time "$BUDGET" --threads 1 --seed 0 --val-every 250 --log-every 25 \
        --checkpoint-every 250 > "$RUNS/compare-$objective.log" 2>&1 &
done
wait
for objective in exlm mlm; do
    cp "$RUNS/compare-$objective/metrics.jsonl" "$RESULTS/$objective-metrics.jsonl"
    cp "$RUNS/compare-$objective/run.json" "$RESULTS/$objective-run.json"
    cp "$RUNS/compare-$objective/curves.png" "$RESULTS/$objective-curves.png"
done
python -c "
from exlm_chem.pretrain import plot_curves
plot_curves(['$RESULTS/exlm-metrics.jsonl', '$RESULTS/mlm-metrics.jsonl'], '$RESULTS/exlm-vs-mlm.png', labels=['ExLM k=4', 'MLM'])
"
