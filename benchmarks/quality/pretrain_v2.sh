#!/usr/bin/env bash
# Longer-trained candidates for the default model v2 and its plain-MLM twin: ExLM (k = 4) and
# MLM, `small` preset, each continuing its own recipe-study run at the mask rate the study
# chose ($RATE; benchmarks/results/recipe_study/: 20M tokens each on the broad corpus with its
# vocabulary), both the same way: a fresh learning-rate schedule over $TOKENS more tokens each,
# another seed (1, so the molecules come in another order than in the study's runs), the same
# batches for both. Runs one after the other (each uses every core) and resumes: a finished
# run is skipped, an interrupted one continues from its last checkpoint. Each model has then
# seen 20M + $TOKENS tokens.
#
# Then: the vocabulary coverage of the new tokenizer, the ExLM exported with its card to
# $RUNS/exlm-export, the MLM twin to $RUNS/mlm-export, both runs' curves in one plot.
# With RATE=0.15 the continued ExLM scored below the run it continued on the validation
# splits, so that run was shipped instead (benchmarks/results/default_model_v2/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUNS=${RUNS:-runs/v2}
STUDY=${STUDY:-runs/recipe}
RATE=${RATE:?set RATE to the mask rate chosen by the recipe study}
TOKENS=${TOKENS:-40000000}  # about 3.4 h (ExLM) and 2 h (MLM) of quiet 2-core CPU
source benchmarks/resumable_pretrain.sh
mkdir -p "$RUNS"
for objective in exlm mlm; do
    pretrain_resumable "$RUNS/$objective" --init-from "$STUDY/$objective-mask$RATE/model" \
        --corpus "$DATA/pretrain/broad_corpus.tsv.gz" \
        --val-corpus "$DATA/zinc/moses_test.csv.gz" --corpus-cache runs/corpus-cache \
        --objective "$objective" --mask-rate "$RATE" --preset small --seed 1 \
        --max-tokens "$TOKENS" --val-every 500 --checkpoint-every 250 --log-every 50
done
python benchmarks/checks/vocabulary_coverage.py --json --model "$RUNS/exlm/model" > "$RUNS/coverage.json"
exlm-chem export "$RUNS/exlm" --to "$RUNS/exlm-export" --coverage "$RUNS/coverage.json" --overwrite
exlm-chem export "$RUNS/mlm" --to "$RUNS/mlm-export" --overwrite
python -c "
from exlm_chem.training.runlog import plot_curves
plot_curves(['$RUNS/exlm/metrics.jsonl', '$RUNS/mlm/metrics.jsonl'], '$RUNS/exlm-vs-mlm.png', labels=['ExLM k=4', 'MLM'])
"
