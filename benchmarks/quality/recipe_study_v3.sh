#!/usr/bin/env bash
# The default-model v3 recipe study, pretraining part: does regressing RDKit's 2D descriptors
# beside (or instead of) token recovery teach the model chemistry? At equal tokens ($TOKENS,
# 20M as in the v2 study), `small` preset, v2's tokenizer, the same batches, schedule and seed:
#   exlm             ExLM alone (v2's recipe)
#   exlm-desc1       ExLM + descriptors, weight 1
#   exlm-desc5       ExLM + descriptors, weight 5
#   mlm-desc$BEST    the plain MLM + descriptors at the better weight ($MLM_WEIGHT)
#   descriptors      descriptors alone (no masks)
# on a seeded 600,000-molecule sample of the broad corpus prepared with its descriptors
# (5,000 of them held out as the training monitor). The recipe is chosen afterwards on
# MoleculeNet validation splits (benchmarks/quality/recipe_scores.py). Runs one after another and
# resumes: a finished run is skipped, an interrupted one continues from its last checkpoint.
# THREADS: torch threads per run (1 beside another job on a 2-core machine). CACHE: the
# prepared-corpus cache (default $RUNS/corpus), shared by runs of the same corpus. SEED: the
# runs' seed (0; another seed, in another $RUNS, makes a replicate: other initial weights,
# batches, masks and 5,000-molecule hold-out, to tell a recipe's effect from a run's luck).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
RUNS=${RUNS:-runs/recipe-v3}
CORPUS=${CORPUS:-runs/broad-600k}
TOKENS=${TOKENS:-20000000}
THREADS=${THREADS:-2}
MLM_WEIGHT=${MLM_WEIGHT:-1}
SEED=${SEED:-0}
ONLY=${ONLY:-exlm-desc1 descriptors exlm-desc5 exlm mlm-desc}
source benchmarks/resumable_pretrain.sh
mkdir -p "$RUNS"
if [ ! -f "$CORPUS/descriptors.json" ]; then
    # About 70 CPU minutes for the descriptors; run again after a stop to resume them.
    exlm-chem prepare-corpus "$DATA/pretrain/broad_corpus.tsv.gz" --out "$CORPUS" \
        --sample 600000 --seed 0 --descriptors
fi
common=(--corpus "$CORPUS" --tokenizer exlm_chem/weights/exlm-chem-v2/tokenizer.json
    --preset small --seed "$SEED" --max-tokens "$TOKENS" --val-every 500 --checkpoint-every 250
    --log-every 50 --shape-bucket 1 --threads "$THREADS" --corpus-cache "${CACHE:-$RUNS/corpus}")
for run in $ONLY; do
    case $run in
        exlm) args=(--objective exlm) ;;
        exlm-desc1) args=(--objective exlm --descriptor-weight 1) ;;
        exlm-desc5) args=(--objective exlm --descriptor-weight 5) ;;
        mlm-desc*)  # mlm-desc takes $MLM_WEIGHT; mlm-descW names its weight
            weight=${run#mlm-desc}
            weight=${weight:-$MLM_WEIGHT}
            run=mlm-desc$weight
            args=(--objective mlm --descriptor-weight "$weight") ;;
        descriptors) args=(--objective descriptors) ;;
        *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    pretrain_resumable "$RUNS/$run" "${common[@]}" "${args[@]}"
done
