#!/usr/bin/env bash
# The default model v2 and its plain-MLM twin: ExLM (k = 4) and MLM, `small` preset, each
# continuing its own recipe-study run at the mask rate the study chose ($RATE; benchmarks/
# results/recipe_study/: 20M tokens each on the broad corpus with its vocabulary), both the
# same way: a fresh learning-rate schedule over $TOKENS more tokens each, another seed (1, so
# the molecules come in another order than in the study's runs), the same batches for both.
# Runs one after the other (each uses every core) and resumes: a finished run is skipped, an
# interrupted one continues from its last checkpoint. Each model has then seen 20M + $TOKENS
# tokens.
#
# Then: the vocabulary coverage of the new tokenizer, the ExLM exported with its card to
# $RUNS/exlm-export (copied into exlm_chem/weights/exlm-chem-v2 only once it beats v1 on the
# validation splits), the MLM twin's weights to benchmarks/results/default_model_v2/mlm-model
# (so that the ablation can be rerun), and both runs' logs to benchmarks/results/default_model_v2/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUNS=${RUNS:-runs/v2}
STUDY=${STUDY:-runs/recipe}
RATE=${RATE:?set RATE to the mask rate chosen by the recipe study}
TOKENS=${TOKENS:-40000000}  # about 3.4 h (ExLM) and 2 h (MLM) of quiet 2-core CPU
RESULTS=benchmarks/results/default_model_v2
source benchmarks/resumable_pretrain.sh
mkdir -p "$RUNS" "$RESULTS"
for objective in exlm mlm; do
    pretrain_resumable "$RUNS/$objective" --init-from "$STUDY/$objective-mask$RATE/model" \
        --corpus "$DATA/pretrain/broad_corpus.tsv.gz" \
        --val-corpus "$DATA/zinc/moses_test.csv.gz" --corpus-cache runs/corpus-cache \
        --objective "$objective" --mask-rate "$RATE" --preset small --seed 1 \
        --max-tokens "$TOKENS" --val-every 500 --checkpoint-every 250 --log-every 50
done
for objective in exlm mlm; do
    cp "$RUNS/$objective/metrics.jsonl" "$RESULTS/$objective-metrics.jsonl"
    cp "$RUNS/$objective/run.json" "$RESULTS/$objective-run.json"
done
python benchmarks/vocabulary_coverage.py --json --model "$RUNS/exlm/model" > "$RESULTS/coverage.json"
exlm-chem export "$RUNS/exlm" --to "$RUNS/exlm-export" --coverage "$RESULTS/coverage.json" --overwrite
exlm-chem export "$RUNS/mlm" --to "$RESULTS/mlm-model" --overwrite
python -c "
from exlm_chem.training.runlog import plot_curves
plot_curves(['$RESULTS/exlm-metrics.jsonl', '$RESULTS/mlm-metrics.jsonl'], '$RESULTS/exlm-vs-mlm.png', labels=['ExLM k=4', 'MLM'])
"
