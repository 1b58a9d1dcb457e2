#!/usr/bin/env bash
# The default model v3: the recipe that the recipe study chose on validation ($RECIPE, one of
# recipe_study_v3.sh's runs; benchmarks/results/recipe_study_v3/) trained from scratch for
# $TOKENS tokens (60M: three times the study's budget) on the same descriptor-prepared 600k-
# molecule sample, same seed and preset, one linear schedule over the whole run (the v2 study
# found that re-warming a finished run cost frozen quality). Resumable across sittings, as the
# study's runs are. Then: the vocabulary coverage, the model exported with its card, and the
# validation scores beside the study's 20M-token run of the same recipe, v2 and the untrained
# network.
# THREADS: torch threads (1 beside another job on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
RECIPE=${RECIPE:?set RECIPE to the run the recipe study chose, e.g. exlm-desc1}
RUNS=${RUNS:-runs/v3}
TOKENS=${TOKENS:-60000000}
STUDY=${STUDY:-runs/recipe-v3}
RUNS=$RUNS TOKENS=$TOKENS ONLY=$RECIPE CACHE=$STUDY/corpus \
    bash benchmarks/quality/recipe_study_v3.sh
model=$RUNS/$RECIPE/model
python benchmarks/checks/vocabulary_coverage.py --json --model "$model" > "$RUNS/coverage.json"
exlm-chem export "$RUNS/$RECIPE" --to "$RUNS/export" --coverage "$RUNS/coverage.json" --overwrite
# Into the study's folder: the models it scored are read back by their weights' hash.
python benchmarks/quality/recipe_scores.py "$RECIPE-long=$model" "$RECIPE=$STUDY/$RECIPE/model" \
    v2=exlm-chem-v2 exlm="$STUDY/exlm/model" --untrained exlm --baseline v2 --baseline "$RECIPE" \
    --seeds 0,1,2,3,4 --out benchmarks/results/recipe_study_v3
