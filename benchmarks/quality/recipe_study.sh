#!/usr/bin/env bash
# The default-model recipe study, pretraining part: ExLM (k = 4) and plain MLM x mask rate
# {0.15, 0.30, 0.45}, `small` preset, the broad corpus with its own vocabulary (tokens seen at
# least 10 times plus every element), the same batches, learning-rate schedule and seed, and
# equal tokens per run ($TOKENS). Validated on MOSES-test as a training monitor; the recipe is
# chosen on MoleculeNet validation splits afterwards. Runs one after another (each uses every
# core) and resumes: a finished run is skipped, an interrupted one continues from its last
# checkpoint, so the study can span several sittings.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUNS=${RUNS:-runs/recipe}
TOKENS=${TOKENS:-20000000}
RATES=${RATES:-0.15 0.30 0.45}
OBJECTIVES=${OBJECTIVES:-exlm mlm}
source benchmarks/resumable_pretrain.sh
mkdir -p "$RUNS"
for rate in $RATES; do
    for objective in $OBJECTIVES; do
        pretrain_resumable "$RUNS/$objective-mask$rate" \
            --corpus "$DATA/pretrain/broad_corpus.tsv.gz" \
            --val-corpus "$DATA/zinc/moses_test.csv.gz" --corpus-cache runs/corpus-cache \
            --objective "$objective" --mask-rate "$rate" --preset small --seed 0 \
            --max-tokens "$TOKENS" --val-every 500 --checkpoint-every 250 --log-every 50 \
            --shape-bucket 1
    done
done
