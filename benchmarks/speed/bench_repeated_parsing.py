"""What do the three places that read a molecule twice cost, against the work around them?

1. `ExLMFeaturizer(fingerprint="ecfp4")` parses each SMILES for the model and again for the
   fingerprint: the second parse against the whole featurize call.
2. `embed_file(shard=...)` counts the records of its input before embedding its slice: the
   count it makes (`estimate_records`: lines, or SD record ends) and the full reading pass it
   made before (an SD file parsed by RDKit), each against the whole call, for a CSV and an
   SD file.
3. The suite's fine-tuning prepares each set's molecules to decide its rows (`ReadableRows`)
   and again to tokenize them for training: one `prepare_smiles` pass against one epoch of
   fine-tuning on the same set's molecules (a suite run trains up to 100 epochs per rate).

Each ratio is measured side by side in this run, on one thread.

    python benchmarks/speed/bench_repeated_parsing.py --molecules 1000 --json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import benchmark_smiles, print_result, seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch
    from rdkit import Chem

    from exlm_chem import ExLMFeaturizer, embed_file, load_model
    from exlm_chem.finetuning import FinetuneSettings, LabelledMolecules, finetune
    from exlm_chem.molecule_files import estimate_records, read_molecule_chunks
    from exlm_chem.preparation import prepare_smiles
    from exlm_chem.smiles import parse_smiles

    torch.set_num_threads(1)
    smiles, source = benchmark_smiles(args.molecules)
    model = load_model()
    result = {"molecules": len(smiles), "source": source}

    featurizer = ExLMFeaturizer(fingerprint="ecfp4", workers=0)
    featurizer.featurize(smiles[:50])  # loads the model
    whole = seconds(lambda: featurizer.featurize(smiles))
    second_parse = seconds(lambda: [parse_smiles(s) for s in smiles])
    result["hybrid_second_parse_share"] = round(second_parse / whole, 4)

    with tempfile.TemporaryDirectory() as tmp:
        csv_path, sdf_path = Path(tmp) / "in.csv", Path(tmp) / "in.sdf"
        csv_path.write_text("smiles\n" + "\n".join(smiles) + "\n")
        with Chem.SDWriter(str(sdf_path)) as writer:
            for s in smiles:
                writer.write(Chem.MolFromSmiles(s))
        for name, path in (("csv", csv_path), ("sdf", sdf_path)):
            start = time.perf_counter()
            sum(len(chunk) for chunk in read_molecule_chunks(path, invalid="keep"))
            full_read = time.perf_counter() - start
            start = time.perf_counter()
            estimate_records(path)
            count = time.perf_counter() - start
            start = time.perf_counter()
            out = Path(tmp) / f"{name}.parquet"
            embed_file(path, out, model=model, shard=(0, 4), workers=0, progress=False)
            call = time.perf_counter() - start
            result[f"shard_count_share_{name}"] = round(count / call, 4)
            result[f"shard_full_read_share_{name}"] = round(full_read / call, 4)

    prepare = seconds(lambda: prepare_smiles(smiles, model.tokenizer))
    y = np.random.default_rng(0).normal(size=(len(smiles), 1))
    cut = int(0.8 * len(smiles))
    train = LabelledMolecules.from_smiles(smiles[:cut], y[:cut], model.tokenizer)
    valid = LabelledMolecules.from_smiles(smiles[cut:], y[cut:], model.tokenizer)
    start = time.perf_counter()
    finetune(model, train, valid, "regression", FinetuneSettings(epochs=1, precision="bf16"))
    epoch = time.perf_counter() - start
    result["suite_second_prepare_per_epoch"] = round(prepare / epoch, 4)
    print_result(result, args.json)


if __name__ == "__main__":
    main()
