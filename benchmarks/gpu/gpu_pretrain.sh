#!/usr/bin/env bash
# Default-model candidates on one GPU: ExLM (k = 4) and its plain-MLM twin, `small` preset, from
# scratch on the broad corpus, side by side with the same seed, batches and learning-rate
# schedule, one schedule over the whole run (the CPU's 20M-token v2 run had little training, and
# re-warming it to the peak rate for more tokens made its features worse:
# results/default_model_v2/). Each stops at $TOKENS tokens or $BUDGET of training time, whichever
# comes first; the schedule follows whichever is further along. Mask rate $RATE (the recipe
# study's choice), batches of $BATCH_TOKENS padded tokens at peak lr $LR (the GPU recipe of v1).
#
# The GPU image has torch but no RDKit, and a job's upload is limited to 64 MiB: the corpus
# travels prepared (`exlm-chem prepare-corpus`: checked and tokenized here, read in place there)
# as .gpu/corpus.tar.xz, made by benchmarks/gpu/gpu_prepare.sh, about 17 MB beside the repository.
# Each run comes back as $OUT/RUN.tar (its final model, run.json, metrics and curves: the
# `small` model's 14 MB of weights fit the 16 MiB a returned file may have), with its log.
#
# On the GPU machine, in a call of 600 s (the runs start about 30 s in and stop at $BUDGET):
#   BUDGET=6m bash benchmarks/gpu/gpu_pretrain.sh
# Back here: unpack each tar under runs/, export with `exlm-chem export`, then score both on the
# validation splits only (benchmarks/quality/recipe_scores.py), beside v2, before any test-set run.
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${OUT:-runs/gpu_pretrain}
RUNS=${RUNS:-${TMPDIR:-/tmp}/exlm-gpu-pretrain}
BUDGET=${BUDGET:-6m}
TOKENS=${TOKENS:-120000000}
RATE=${RATE:-0.15}
BATCH_TOKENS=${BATCH_TOKENS:-32768}
LR=${LR:-2e-3}
SEED=${SEED:-0}
mkdir -p "$RESULTS" "$RUNS"
tar -C "$RUNS" -xJf .gpu/corpus.tar.xz  # corpus/broad, corpus/moses_test
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RESULTS/gpu_name.txt" \
    || echo "no nvidia-smi (a CPU dry run)" >"$RESULTS/gpu_name.txt"
pretrain() {  # objective, run folder, further flags
    local objective=$1 out=$2
    shift 2
    python3 -m exlm_chem pretrain --corpus "$RUNS/corpus/broad" \
        --val-corpus "$RUNS/corpus/moses_test" --out "$out" --objective "$objective" \
        --mask-rate "$RATE" --preset small --seed "$SEED" --batch-tokens "$BATCH_TOKENS" \
        --lr "$LR" --threads 4 --allocator system "$@"
}
# Three steps, a validation and a saved model each, side by side, so that a set-up that would
# fail at the end of the budget fails in seconds.
for objective in exlm mlm; do
    pretrain "$objective" "$RUNS/smoke-$objective" --max-steps 3 --val-every 3 \
        >"$RESULTS/smoke-$objective.log" 2>&1 &
done
for objective in exlm mlm; do
    wait -n || { tail -n 20 "$RESULTS"/smoke-*.log; exit 1; }
done
pids=()
for objective in exlm mlm; do
    pretrain "$objective" "$RUNS/$objective" --max-tokens "$TOKENS" --max-time "$BUDGET" \
        --log-every 100 --val-every 1000 --checkpoint-every 1000 >"$RESULTS/$objective.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
for objective in exlm mlm; do
    tar -C "$RUNS" -cf "$RESULTS/$objective.tar" "$objective/model" "$objective/run.json" \
        "$objective/metrics.jsonl" "$objective/curves.png" || status=1
done
ls -l "$RESULTS"
exit "$status"
