#!/usr/bin/env bash
# The MoleculeNet suite: every set in $EXLM_DATA_DIR/moleculenet, a model ($MODEL, the default
# model when empty) read out four ways, its hybrid with ECFP4 (the model read out as
# $HYBRID_READOUT, the read-out the recipe study chose), ECFP4, RDKit 2D descriptors, the same
# network untrained, the previously shipped model ($PREVIOUS, frozen probes only; empty leaves
# it out) and the plain-MLM twin ($MLM) when its folder exists; frozen probes (logistic
# regression, random forest) and fine-tuning with the $FINETUNE_HEAD head (learning rate chosen
# on validation averaged over the seeds) on 5 seeded scaffold splits; the frozen probes also on
# DeepChem's deterministic scaffold split ($OUT/deepchem_split), run last.
# ToxCast (617 tasks) gets DeepChem's multitask network and multitask fine-tuning only.
# Order: frozen probes on the classification sets ($FROZEN_FIRST), ToxCast, fine-tuning, then
# the regression sets' frozen probes ($FROZEN_LATER: their random forests, every feature tried
# at each split, are the slowest fits of the suite), then the DeepChem split.
# $PARTS runs some of these parts only (a GPU machine runs `finetune`: gpu_finetune.sh).
# Re-running continues where it stopped (--resume). results.md starts with every family against
# each set's strongest baseline and ends with each family's read-out and probe chosen on
# validation and paired bootstrap intervals of the model against every other family.
# The `baselines` part adds what a chemist would use instead: Morgan counts, fingerprints joined
# with descriptors, the model joined with them, and chemprop trained from scratch on every split
# (its results, like every fixed baseline's, are kept in the cache and reused by later runs).
# PROFILE=quick runs the README's headline table only ($OUT: benchmarks/results/
# moleculenet_quick_$MODEL): the model's default read-out (layers), its hybrid with ECFP4, the
# same network untrained and the previous model's layers read-out, each with logistic
# regression (the probe validation chose for every ExLM read-out of the v2 suite), beside the
# baselines (ECFP4 bits and counts, RDKit 2D descriptors, counts joined with descriptors:
# logistic regression and 500-tree forests; chemprop) on the eight sets without ToxCast, 5
# seeded scaffold splits, no fine-tuning. The baselines are computed once and then read from
# the cache (or the committed folder, $BASELINES_FROM), so later models pay for their own
# feature sets only.
# PROFILE=standard is the nine-set suite cut to fit 6 hours of a 2-core CPU: the quick profile,
# the model joined with RDKit descriptors under the random forest (what it adds to the
# strongest frozen baseline), ToxCast's frozen features with DeepChem's multitask network (and its baselines, chemprop
# included), and the model fine-tuned at one learning rate, 3e-4 (no grid: on the v2 suite's
# validation parts that rate costs less than the spread between splits on all 27 set-model
# pairs, ../results/finetune_choice_cut.md), all 5 seeds, on the eight sets without ToxCast
# (whose 617-task fine-tuning alone takes about 6 hours of this CPU), two runs at a time
# ($OUT: benchmarks/results/moleculenet_standard_$MODEL).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
PROFILE=${PROFILE:-full}
if [ "$PROFILE" = quick ] || [ "$PROFILE" = standard ]; then
    OUT=${OUT:-benchmarks/results/moleculenet_${PROFILE}_${MODEL:-exlm-chem-v3}}
fi
if [ "$PROFILE" = quick ]; then
    PARTS=${PARTS:-quick}
elif [ "$PROFILE" = standard ]; then
    PARTS=${PARTS:-quick,with_descriptors,toxcast_quick,finetune_model}
    FINETUNE_LR=${FINETUNE_LR:-3e-4}
    FINETUNE_JOBS=${FINETUNE_JOBS:-2}
    FINETUNE_DATASETS=${FINETUNE_DATASETS:-freesolv,esol,bace,clintox,sider,bbbp,tox21,lipo}
fi
OUT=${OUT:-benchmarks/results/moleculenet_v2protocol}
MODEL=${MODEL:-}
MLM=${MLM:-}
PREVIOUS=${PREVIOUS-exlm-chem-v2}
SEEDS=${SEEDS:-0,1,2,3,4}
FROZEN_FIRST=${FROZEN_FIRST:-bbbp,bace,clintox,tox21,sider}
FROZEN_LATER=${FROZEN_LATER:-esol,freesolv,lipo}
DATASETS=${DATASETS:-$FROZEN_FIRST,$FROZEN_LATER}  # the DeepChem split's
DEVICE=${DEVICE:-auto}
HYBRID_READOUT=${HYBRID_READOUT:-layers}
FINETUNE_HEAD=${FINETUNE_HEAD:-cls}  # cls, mean or layers; several (cls,layers): chosen on validation
CHOICE_SEEDS=${CHOICE_SEEDS:-$SEEDS}  # the seeds whose validation chooses head and learning rate
PARTS=${PARTS:-classification,toxcast,finetune,regression,baselines,deepchem_split}
FINETUNE_JOBS=${FINETUNE_JOBS:-1}  # fine-tuning runs at a time (CPU: 2 on 2 cores is 1.2x faster)
FINETUNE_LR=${FINETUNE_LR:-3e-5,1e-4,3e-4,1e-3}  # several: chosen on validation
# The committed baselines (fingerprints, descriptors, chemprop on these splits) are reused, not
# computed again: a new model, or a new machine, pays for its own features only. Empty: none.
BASELINES_FROM=${BASELINES_FROM-benchmarks/results/moleculenet_baselines}
# Smallest sets first: on a CPU the whole fine-tuning part takes days, and what is done is kept;
# Lipophilicity after Tox21 and ToxCast, whose runs the six-set classification means wait for.
FINETUNE_DATASETS=${FINETUNE_DATASETS:-freesolv,esol,bace,clintox,sider,bbbp,tox21,toxcast,lipo}
exlm=exlm${MODEL:+:$MODEL}
random=random${MODEL:+:$MODEL}
models="$exlm,$random"
frozen="$exlm[mean],$exlm[cls],$exlm[mean+cls],$exlm[layers],$exlm[$HYBRID_READOUT]&ecfp,ecfp"
frozen+=",rdkit2d,$random[mean],$random[cls],$random[layers]"
quick="$exlm[layers],$exlm[layers]&ecfp,$random[layers]"
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$MODEL" ]; then
    frozen+=",exlm:$PREVIOUS[mean],exlm:$PREVIOUS[cls],exlm:$PREVIOUS[layers]"
    quick+=",exlm:$PREVIOUS[layers]"
fi
if [ -n "$MLM" ] && [ -f "$MLM/config.json" ]; then
    models+=",mlm:$MLM"
    frozen+=",mlm:$MLM[mean],mlm:$MLM[cls],mlm:$MLM[mean+cls],mlm:$MLM[layers]"
fi
baselines="ecfp-count,ecfp&rdkit2d,ecfp-count&rdkit2d,$exlm[$HYBRID_READOUT]&rdkit2d"
baselines+=",$exlm[$HYBRID_READOUT]&ecfp-count&rdkit2d,ecfp,rdkit2d"
common=(--data-dir "$DATA/moleculenet" --split random_scaffold --seeds "$SEEDS" --out "$OUT"
    --cache-dir runs/moleculenet-cache --resume ${BASELINES_FROM:+--baselines-from "$BASELINES_FROM"})
part() { [[ ",$PARTS," == *",$1,"* ]]; }
if part classification; then
    exlm-chem benchmark --datasets "$FROZEN_FIRST" --features "$frozen" --probe logreg,rf "${common[@]}"
fi
if part toxcast; then
    exlm-chem benchmark --datasets toxcast --features "$frozen" --probe deepchem "${common[@]}"
fi
if part finetune; then
    exlm-chem benchmark --datasets "$FINETUNE_DATASETS" --features "$models" --probe none \
        --finetune --finetune-lr "$FINETUNE_LR" --finetune-head "$FINETUNE_HEAD" \
        --finetune-choice-seeds "$CHOICE_SEEDS" \
        --finetune-jobs "$FINETUNE_JOBS" --device "$DEVICE" "${common[@]}"
fi
if part regression; then
    exlm-chem benchmark --datasets "$FROZEN_LATER" --features "$frozen" --probe logreg,rf "${common[@]}"
fi
if part baselines; then
    # ecfp and rdkit2d again: their random forests now have 500 trees (older records are redone).
    exlm-chem benchmark --datasets "$DATASETS" --features "$baselines" --probe logreg,rf "${common[@]}"
    exlm-chem benchmark --datasets toxcast --features "$baselines" --probe deepchem "${common[@]}"
    exlm-chem benchmark --datasets "$DATASETS,toxcast" --features chemprop --probe none \
        "${common[@]}"
fi
if part quick; then
    exlm-chem benchmark --datasets "$DATASETS" --features "$quick" --probe logreg "${common[@]}"
    exlm-chem benchmark --datasets "$DATASETS" --features "ecfp,ecfp-count,rdkit2d,ecfp-count&rdkit2d" \
        --probe logreg,rf "${common[@]}"
    exlm-chem benchmark --datasets "$DATASETS" --features chemprop --probe none "${common[@]}"
fi
if part with_descriptors; then
    exlm-chem benchmark --datasets "$DATASETS" --features "$exlm[layers]&rdkit2d" --probe rf "${common[@]}"
fi
if part toxcast_quick; then
    exlm-chem benchmark --datasets toxcast --features "$quick,ecfp,ecfp-count,rdkit2d,ecfp-count&rdkit2d" \
        --probe deepchem "${common[@]}"
    exlm-chem benchmark --datasets toxcast --features chemprop --probe none "${common[@]}"
fi
if part finetune_model; then  # the model alone at the rates given (standard profile)
    exlm-chem benchmark --datasets "$FINETUNE_DATASETS" --features "$exlm" --probe none \
        --finetune --finetune-lr "$FINETUNE_LR" --finetune-head "$FINETUNE_HEAD" \
        --finetune-jobs "$FINETUNE_JOBS" --device "$DEVICE" "${common[@]}"
fi
# The secondary view: DeepChem's deterministic scaffold split (one split, so no spread),
# last: the 5 seeded splits, fine-tuning included, are the primary results.
if part deepchem_split; then
    exlm-chem benchmark --datasets "$DATASETS" --features "$frozen" --probe logreg,rf \
        --data-dir "$DATA/moleculenet" --split scaffold --seeds 0 --out "$OUT/deepchem_split" \
        --cache-dir runs/moleculenet-cache --resume
fi
