# Sourced by the GPU scripts (gpu_check.sh, gpu_finetune.sh) on a GPU machine: RDKit, DeepChem
# and selfies from .gpu/site.tar.xz where the machine lacks them, the data carried in .gpu/
# (zinc.tar.xz, moleculenet.tar.xz) as $EXLM_DATA_DIR, and an `exlm-chem` command on PATH.
# benchmarks/gpu/gpu_prepare.sh makes those files.
gpu_root=${TMPDIR:-/tmp}/exlm-gpu
mkdir -p "$gpu_root/bin" "$gpu_root/data"
if ! python3 -c "import rdkit, deepchem, selfies" 2>/dev/null; then
    tar -C "$gpu_root" -xJf .gpu/site.tar.xz
    export PYTHONPATH=$gpu_root/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for archive in .gpu/zinc.tar.xz .gpu/moleculenet.tar.xz; do
    if [ -f "$archive" ]; then
        tar -C "$gpu_root/data" -xJf "$archive"
        export EXLM_DATA_DIR=$gpu_root/data
    fi
done
printf '#!/bin/sh\nexec python3 -m exlm_chem "$@"\n' > "$gpu_root/bin/exlm-chem"
chmod +x "$gpu_root/bin/exlm-chem"
export PATH=$gpu_root/bin:$PATH
