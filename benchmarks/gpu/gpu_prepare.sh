#!/usr/bin/env bash
# Prepares, on a CPU machine with PyPI, what the GPU scripts need on a GPU machine that has
# torch but neither RDKit, DeepChem nor selfies, and no network (Python 3.12 there):
#   .gpu/site.tar.xz         RDKit (without its Contrib folder and type stubs), DeepChem 2.8
#                            (unpacked: its metadata says Python < 3.12, its code runs there)
#                            and selfies, as an unpacked site folder
#   .gpu/zinc.tar.xz         zinc/moses_test.csv.gz, for gpu_check.sh
#   .gpu/moleculenet.tar.xz  the MoleculeNet files, for gpu_finetune.sh
#   .gpu/corpus.tar.xz       the broad corpus and MOSES-test, prepared (`exlm-chem prepare-corpus`:
#                            checked by RDKit and tokenized here), for gpu_pretrain.sh, which
#                            then needs no RDKit there and so no site
# A GPU job takes the repository, .gpu/site.tar.xz (gpu_pretrain.sh: not) and the data file
# its script reads; where a job's upload is limited to 64 MiB, the wheels as they come (32 MB of
# RDKit) do not fit beside the repository's 45 MB, hence the unpacked, trimmed site, and the
# corpus prepared instead of the site: the sizes are printed last.
#   EXLM_DATA_DIR=../shared/data bash benchmarks/gpu/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${EXLM_DATA_DIR:-../shared/data}
PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p .gpu "$work/wheels" "$work/site"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --implementation cp "${platforms[@]}" -d "$work/wheels" "rdkit==2026.9.1" "selfies==2.2.0"
# DeepChem 2.8 declares Python < 3.12, so pip would pick 2.5 for 3.12: fetch it for 3.11.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    -d "$work/wheels" "deepchem==2.8.0"
for wheel in "$work"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$work/site"
done
rm -rf "$work/site/rdkit/Contrib" "$work/site/rdkit-stubs"
tar -C "$work" -cf - site | xz -T0 -6 > .gpu/site.tar.xz
tar -C "$DATA" -cf - zinc/moses_test.csv.gz | xz -T0 -6 > .gpu/zinc.tar.xz
tar -C "$DATA" -cf - moleculenet | xz -T0 -6 > .gpu/moleculenet.tar.xz
exlm-chem prepare-corpus "$DATA/pretrain/broad_corpus.tsv.gz" --out "$work/corpus/broad"
exlm-chem prepare-corpus "$DATA/zinc/moses_test.csv.gz" --out "$work/corpus/moses_test"
tar -C "$work" -cf - corpus | xz -T0 -9 > .gpu/corpus.tar.xz
repository=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
echo "repository (tracked files): $((repository / 1024)) KiB"
for part in site zinc moleculenet corpus; do
    echo ".gpu/$part.tar.xz: $(($(stat -c %s ".gpu/$part.tar.xz") / 1024)) KiB"
done
for script in check:site+zinc finetune:site+moleculenet pretrain:corpus; do
    name=${script%%:*} parts=${script##*:} total=$repository
    for part in ${parts//+/ }; do
        total=$((total + $(stat -c %s ".gpu/$part.tar.xz")))
    done
    verdict=fits
    [ "$total" -le $((64 * 1024 * 1024)) ] || verdict="does NOT fit"
    echo "gpu_$name.sh call (repository + ${parts//+/ + }): $((total / 1024)) KiB of 65536: $verdict"
done
