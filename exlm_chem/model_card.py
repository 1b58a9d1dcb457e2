"""Export a pretraining run as a shippable model folder with a model card.

The card's numbers are all read from the run's own files (``run.json``, ``metrics.jsonl``), so
they match the logs committed beside it.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .model import ExLMConfig, ExLMModel, load_model_directory, save_model
from .tokenizer import SmilesTokenizer

CHECK_SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "Cn1c(=O)c2c(ncn2C)n(C)c1=O",
    "CC(=O)Nc1ccc(O)cc1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "CN1CCC[C@H]1c1cccnc1",
    "CN1C(=O)CN=C(c2ccccc2)c2cc(Cl)ccc21",
    "CNCCC(Oc1ccc(C(F)(F)F)cc1)c1ccccc1",
    "COc1ccc2[nH]c([S+]([O-])Cc3ncc(C)c(OC)c3C)nc2c1",
]


def _run_model(run_dir: Path) -> tuple[ExLMModel, int]:
    """The run's final model (a model folder), or else the model of its latest checkpoint; and
    the step it is from. Checkpoints are the run's own format: only export reads them."""
    from .training.checkpoints import checkpoint_paths, load_checkpoint
    from .training.runlog import read_metrics

    if (run_dir / "model" / "config.json").exists():
        step = read_metrics(run_dir / "metrics.jsonl")[-1]["step"]
        return load_model_directory(run_dir / "model"), step
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise InputError(f"{run_dir}: no final model and no checkpoint")
    checkpoint = load_checkpoint(paths[-1])
    model = ExLMModel(
        ExLMConfig.from_dict(checkpoint["model_config"]),
        SmilesTokenizer.load(run_dir / "tokenizer.json"),
    )
    model.load_state_dict(checkpoint["model"])
    return model.eval(), checkpoint["step"]


def export_model(
    run_dir: str | Path,
    dest: str | Path,
    dtype: torch.dtype = torch.float32,
    overwrite: bool = False,
    coverage: dict | None = None,
) -> dict:
    """Write the run's model to ``dest`` (weights in ``dtype``), its curves and MODEL_CARD.md.

    ``dest`` may not be the run folder; a folder that already holds a model is replaced only
    with ``overwrite``. ``coverage``: how the model's vocabulary reads each MoleculeNet set
    (the JSON of ``benchmarks/checks/vocabulary_coverage.py``), shown on the card. Returns facts about
    the export, among them the largest difference between embeddings from the stored weights
    and from the float32 weights.
    """
    from .embedding import embed
    from .outputs import atomic_path, atomic_write_text, same_file
    from .training.runlog import read_metrics

    run_dir, dest = Path(run_dir), Path(dest)
    if same_file(run_dir, dest):
        raise InputError(f"{dest}: is the run folder itself; export to a folder of its own")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    if (dest / "config.json").exists() and not overwrite:
        raise InputError(f"{dest}: already holds a model; pass --overwrite to replace it")
    model, step = _run_model(run_dir)
    save_model(model, dest, dtype=dtype)
    stored = load_model_directory(dest)
    with warnings.catch_warnings():  # atoms a small vocabulary lacks: beside the point here
        warnings.simplefilter("ignore")
        difference = float(np.abs(embed(CHECK_SMILES, stored) - embed(CHECK_SMILES, model)).max())
    if (run_dir / "curves.png").exists():
        with atomic_path(dest / "curves.png") as tmp:
            shutil.copyfile(run_dir / "curves.png", tmp)
    run = json.loads((run_dir / "run.json").read_text())
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["step"] <= step]
    facts = {
        "step": step,
        "embedding_max_abs_difference": difference,
        "dtype": str(dtype).removeprefix("torch."),
        "started_from": earlier_training(run["pretrain"].get("init_from")),
    }
    card = model_card(run, rows, model, facts) + coverage_section(coverage)
    atomic_write_text(dest / "MODEL_CARD.md", card)
    chembl = chembl_sources(run)
    if chembl:
        atomic_write_text(dest / "LICENSE", weights_licence(chembl))
    else:
        (dest / "LICENSE").unlink(missing_ok=True)  # a replaced model's notice
    return facts


# The broad corpus's ChEMBL-derived sources (its data card): they oblige an attribution.
CHEMBL_SOURCES = {"datagrok500k", "molscore", "chemxlstm", "gmattedi", "bp_chembl"}


def chembl_sources(run: dict) -> list[str]:
    """The run's corpus sources derived from ChEMBL."""
    sources = run["corpus"].get("sources") or {}
    return sorted(s for s in sources if s.lower() in CHEMBL_SOURCES or "chembl" in s.lower())


CHEMBL_ATTRIBUTION = (
    "ChEMBL (Zdrazil et al., The ChEMBL Database in 2023, Nucleic Acids Research 52, D1180, "
    "2024; EMBL-EBI)"
)


def weights_licence(chembl: list[str]) -> str:
    """The licence notice shipped beside weights trained on ChEMBL-derived molecules."""
    return f"""Licence of the model weights in this folder

The weights (model.safetensors) were trained on a corpus part of which ({", ".join(chembl)}) is
derived from {CHEMBL_ATTRIBUTION}, which is licensed under the Creative Commons
Attribution-ShareAlike 3.0 Unported licence (CC BY-SA 3.0,
https://creativecommons.org/licenses/by-sa/3.0/).

These weights are distributed under the same licence, CC BY-SA 3.0: you may share and adapt
them, also commercially, provided you credit ChEMBL as above and distribute what you derive
from them under the same licence.

The exlm-chem code is MIT-licensed; this notice covers the weights only.
"""


def earlier_training(init_from: str | None) -> dict | None:
    """The last metrics row (tokens, steps, time) of the run a model was started from, when
    that model is a run's exported folder (RUN/model beside RUN/metrics.jsonl)."""
    from .training.runlog import read_metrics

    if not init_from or not (Path(init_from) / "config.json").is_file():
        return None
    metrics = Path(init_from).parent / "metrics.jsonl"
    rows = read_metrics(metrics) if metrics.is_file() else []
    return rows[-1] if rows else None


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def model_card(run: dict, rows: list[dict], model: ExLMModel, facts: dict) -> str:
    config = run["model"]
    pretrain = run["pretrain"]
    last = rows[-1]
    validated = [r for r in rows if "val_accuracy" in r]
    final_val = validated[-1] if validated else {}
    corpus = ", ".join(Path(p).name for p in pretrain["corpus"])
    files = run["corpus"].get("files") or []  # a prepared corpus: the files it was made from
    if files and corpus != ", ".join(files):
        corpus += f" (prepared from {', '.join(files)})"
    val_corpus = (
        Path(pretrain["val_corpus"]).name
        if pretrain.get("val_corpus")
        else "a held-out slice of the corpus"
    )
    tokens = [t for t in model.tokenizer.id_to_token if not (t.startswith("<") and t.endswith(">"))]
    vocabulary = " ".join(f"`{t}`" for t in tokens)
    sources = run["corpus"].get("sources") or {}
    source_list = ", ".join(f"{name} {count:,}" for name, count in sources.items())
    chembl = chembl_sources(run)
    charged = any(("+" in t or "-" in t) and t.startswith("[") for t in tokens)
    stereo = model.tokenizer.reads_stereo
    if charged and stereo:
        seen = (
            "Trained on drug-like molecules with charges, stereochemistry and salts; peptides, "
            "organometallics and molecules far from drug-like are rare in its corpus."
        )
    else:
        seen = (
            "Trained on drug-like, neutral ZINC molecules without stereochemistry (MOSES, "
            "250-350 Da): charged species, stereocentres, metals, peptides and large molecules "
            "are outside what it has seen."
        )
    licence = ""
    if chembl:
        licence = (
            "\n## Licence\n\nPart of the pretraining corpus ("
            + ", ".join(chembl)
            + f") is derived from {CHEMBL_ATTRIBUTION}, licensed CC BY-SA 3.0: these weights "
            "are distributed under the same licence (see `LICENSE` beside them); the exlm-chem "
            "code is MIT.\n"
        )
    earlier = facts.get("started_from")
    total_tokens = last["tokens"] + (earlier["tokens"] if earlier else 0)
    started_from = ""
    if pretrain.get("init_from"):
        before = (
            f", pretrained on {earlier['tokens']:,} tokens in {_duration(earlier['elapsed'])}"
            if earlier
            else ""
        )
        started_from = (
            f"| started from | the weights of {pretrain['init_from']}{before} (new tokens from "
            "the atom it read them as), then trained as below |\n"
        )
    tokens_before = f"; {total_tokens:,} with the run it started from" if earlier else ""
    if stereo:
        stereo_note = "Stereochemistry is part of the input."
    else:
        stereo_note = (
            "Its vocabulary has no stereo tokens, so the canonical SMILES is written without "
            "stereochemistry: stereoisomers share a vector."
        )
    if config["objective"] == "mlm":
        objective = "mlm (one prediction per `<mask>`, no expansion)"
        if config.get("descriptors"):  # not the plain twin: a model of its own
            title, encoder = "exlm-chem model", "A masked-language-model encoder"
        else:
            title, encoder = "exlm-chem plain-MLM model", "A plain masked-language-model encoder"
    elif config["objective"] == "descriptors":
        title, encoder = "exlm-chem descriptor model", "An encoder of ExLM's shape"
        objective = f"descriptors only (no masks): regression of {_targets(config['descriptors'])}"
    else:
        title, encoder = "exlm-chem model", "An ExLM encoder (Zheng et al., ICML 2025)"
        objective = f"exlm (k = {config['k']} states per mask, `<s>` and `</s>`)"
    masking = f"{config['mask_rate']:.0%} of real tokens, at least one per molecule"
    if config["objective"] == "descriptors":
        masking = "none"
    if config.get("descriptors") and config["objective"] != "descriptors":
        objective += (
            f", plus regression of {_targets(config['descriptors'])} from the molecule vector, "
            f"weight {config['descriptor_weight']:g}"
        )
    descriptor_row = ""
    if config.get("descriptors"):
        descriptor_row = (
            "| final validation descriptor error | "
            f"{_number(final_val.get('val_descriptor_loss'))} (mean squared, robust-scaled) |\n"
        )
    exlm_accuracy_note = ""
    if config["objective"] == "exlm":
        exlm_accuracy_note = (
            "\nMasked-token accuracy for ExLM counts the tokens on the best path through the "
            "DAG of\nexpanded states, decoded without looking at the targets (see "
            "`exlm_chem.training.validation.validate`).\n"
        )
    return f"""# {title}

{encoder} for SMILES, pretrained with exlm-chem's own
`exlm-chem pretrain`. It turns a molecule into a {config["hidden_size"]}-dimensional vector
(`exlm_chem.embed`, `exlm-chem embed`).

| | |
|---|---|
| objective | {objective} |
| preset | {config["preset"]}: {config["num_layers"]} layers x {config["hidden_size"]} wide, {config["num_heads"]} heads, {model.num_parameters():,} parameters |
| tokenizer | atom-level SMILES regex, {config["vocab_size"]} tokens (5 special), sequences up to {config["max_length"]} tokens |
| corpus | {corpus}: {run["corpus"]["kept"]:,} molecules kept of {run["corpus"]["read"]:,} read ({run["corpus"]["invalid_rdkit"]} rejected by RDKit){"; by source: " + source_list if source_list else ""}{"; draws per epoch: " + pretrain["source_weights"] if pretrain.get("source_weights") else ""} |
{started_from}| validation | {val_corpus}, {pretrain["val_size"]:,} molecules |
| masking | {masking} |
| optimisation | AdamW (0.9, 0.98), peak lr {pretrain["lr"]:g}, {pretrain["warmup"]:.0%} warm-up then {pretrain["schedule"]} decay, batches of {pretrain["batch_tokens"]:,} padded tokens, {run["precision"]} |
| steps | {last["step"]:,} |
| tokens seen | {last["tokens"]:,} ({last["molecules"]:,} molecules, {last["molecules"] / run["corpus"]["kept"]:.2f} passes over the corpus){tokens_before} |
| hardware | {run.get("hardware", "not recorded")}, {run["world_size"]} process(es) |
| training time | {_duration(last["elapsed"])} (the steps alone, without validation) |
| final validation masked-token accuracy | {final_val.get("val_accuracy", float("nan")):.4f} (step {final_val.get("step", "-")}) |
| final validation loss | {_number(final_val.get("val_loss"))} |
{descriptor_row}| stored as | {facts["dtype"]} safetensors; embeddings within {facts["embedding_max_abs_difference"]:.1e} of float32 |
{exlm_accuracy_note}
![training curves](curves.png)

## Intended use

Frozen molecule embeddings for property-prediction probes (logistic regression, random
forests, small networks), similarity search and clustering of drug-like molecules, and a
starting point for fine-tuning. Compare against ECFP4 and the untrained-network control
(`exlm-chem benchmark`) before relying on it for a task.

## Input

`embed`, `ExLMFeaturizer` and `ExLMTransformer` feed the model RDKit's canonical SMILES of each
molecule, the form of its pretraining corpus, so every way of writing a molecule gets the same
vector. {stereo_note} A vector is read out as the mean of every layer's atom-level token
states, averaged over the layers (`layers`, the default), the mean of the last layer's (`mean`),
the first `<s>` state (`cls`) or several side by side (`mean+cls`, `--pooling`).

## Limits

- {seen} Its vocabulary is {vocabulary}; an atom outside it is read as its nearest known
  form (`exlm-chem tokenize --fallbacks` shows how), any other token as `<unk>`.
- A small model: {total_tokens / 1e6:,.0f}M tokens of pretraining, far less than the paper's.
- SMILES longer than {config["max_length"] - 2} tokens are truncated.
{licence}"""


def coverage_section(coverage: dict | None) -> str:
    """The card's table of how the vocabulary reads each MoleculeNet set ("" without one)."""
    if not coverage:
        return ""
    sets = [name for name, value in coverage.items() if isinstance(value, dict)]
    if not sets:
        raise InputError("coverage: no per-set figures (expected vocabulary_coverage.py's JSON)")
    rows = []
    for name in sets:
        figures = coverage[name]
        stereo = figures["written_with_stereo"]
        rows.append(
            f"| {name} | {figures['molecules']:,} | {figures['with_unknown']:.1%} | "
            f"{figures['with_fallback']:.1%} | "
            + (f"{figures['stereo_read']:.1%} of {stereo:,} |" if stereo else "- |")
        )
    return (
        "\n## Vocabulary coverage\n\n"
        "How the vocabulary reads the MoleculeNet sets as `embed` feeds them to the model "
        "(`benchmarks/checks/vocabulary_coverage.py`): the share of molecules with a token read as "
        "`<unk>`, with an atom read through a fallback (`[NH+]` as `[N+]`), and of those written "
        "with stereochemistry, the share whose stereo the model reads.\n\n"
        "| set | molecules | with `<unk>` | with a fallback | stereo read |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def _targets(count: int) -> str:
    """What a descriptor head of ``count`` outputs regresses: RDKit's 2D descriptors, then
    counts of common Morgan environments (`prepare-corpus --substructures`)."""
    from .descriptors import descriptor_names

    described = len(descriptor_names())
    if count <= described:
        return f"{count} RDKit 2D descriptors"
    return f"{described} RDKit 2D descriptors and {count - described} substructure counts"
