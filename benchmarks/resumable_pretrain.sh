# Sourced by the pretraining scripts. `pretrain_resumable OUT ARGS...` runs
# `exlm-chem pretrain --out OUT ARGS...`, appending to OUT.log: skipped when OUT holds a finished
# model, continued from its last checkpoint (--resume; a start option such as --init-from is
# then ignored) when OUT holds one, so a script of several runs can span several sittings.
pretrain_resumable() {
    local out=$1
    shift
    if [ -f "$out/model/config.json" ]; then
        return 0
    fi
    local resume=()
    if compgen -G "$out/checkpoints/step-*.pt" > /dev/null; then
        resume=(--resume)
    fi
    exlm-chem pretrain --out "$out" "$@" "${resume[@]}" >> "$out.log" 2>&1
}
