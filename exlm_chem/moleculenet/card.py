"""A model card's MoleculeNet section, made from a suite's results (`exlm-chem benchmark`):
the model's test scores beside its baselines', each family's read-out and probe chosen on
validation (`chosen_on_validation`), so the card says how the model compares before anyone
relies on it."""

from __future__ import annotations

import re

from ..errors import InputError
from .compare import chosen_on_validation
from .datasets import DATASETS

SECTION_TITLE = "## MoleculeNet"

# The suite's families a card shows, in this order: "&..." joins the model's own family (named
# by the caller), "random" is its network untrained, "mlm" any plain-MLM twin.
BASELINES = {
    "&ecfp": "this model + ECFP4",
    "&rdkit2d": "this model + RDKit 2D descriptors",
    "ecfp": "ECFP4",
    "ecfp-count": "ECFP4 counts",
    "rdkit2d": "RDKit 2D descriptors",
    "ecfp-count&rdkit2d": "ECFP4 counts + RDKit 2D descriptors",
    "chemprop": "chemprop",
    "random": "same network, untrained",
    "mlm": "plain-MLM twin",
}
MODES = {"frozen": "frozen", "finetuned": "fine-tuned", "scratch": "trained from scratch"}


def evaluation_section(records: list[dict], source: str, model_family: str = "exlm") -> str:
    """Markdown: test mean over the seeds per dataset for the model (``model_family``, e.g.
    ``exlm`` or ``exlm:exlm-chem-v1``) frozen and fine-tuned, its hybrid with ECFP4 and the
    baselines, each family's read-out and probe chosen on validation; ``source`` names the
    results file. An empty cell: not run; a family's mean ROC-AUC needs every classification
    set of the results."""
    chosen = chosen_on_validation(records)
    if chosen.empty or model_family not in set(chosen["family"]):
        raise InputError(f"{source}: no results with validation values for {model_family!r}")
    datasets = [d for d in DATASETS if d in set(chosen["dataset"])]
    classification = [d for d in datasets if DATASETS[d].task_type == "classification"]
    means = chosen.groupby(["family", "mode", "dataset"])["value"].mean()
    splits = set(chosen["split"]) if "split" in chosen else set()
    seeds = sorted(set(chosen["seed"]))
    where = (
        f"{len(seeds)} seeded scaffold splits (80/10/10), mean over the splits"
        if splits == {"random_scaffold"}
        else f"the {'/'.join(sorted(splits)) or 'unnamed'} split"
    )
    names = {model_family: "this model"}
    present = set(chosen["family"])
    for key, label in BASELINES.items():
        names |= {name: label for name in _families(key, model_family, present)}
    header = [*datasets] + (
        [f"mean ROC-AUC ({len(classification)} sets)"] if classification else []
    )
    lines = [
        SECTION_TITLE,
        "",
        f"Test scores on {where}: ROC-AUC for classification (higher is better), RMSE for "
        "regression (lower is better). "
        "For every family the read-out and the probe (logistic regression or ridge, random "
        "forest; DeepChem's multitask network on ToxCast) or the fine-tuning learning rate are "
        f"chosen on validation. From `{source}`; the results.md beside it has the spread over "
        "the splits and paired bootstrap intervals. An empty cell has not been run.",
        "",
        "| features | " + " | ".join(header) + " |",
        "|---" * (len(header) + 1) + "|",
    ]
    for fam, label in names.items():
        for mode, mode_label in MODES.items():
            if (fam, mode) not in means.index.droplevel("dataset"):
                continue
            values = [means.get((fam, mode, d)) for d in datasets]
            cells = ["" if v is None else f"{v:.3f}" for v in values]
            if len(header) > len(datasets):
                scores = [means.get((fam, mode, d)) for d in classification]
                cells.append("" if None in scores else f"{sum(scores) / len(scores):.3f}")
            lines.append(f"| {label}, {mode_label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _families(key: str, model_family: str, present: set[str]) -> list[str]:
    """The families in the results that BASELINES' ``key`` stands for."""
    if key.startswith("&"):
        return [model_family + key]
    if key == "random":  # exlm:NAME was untrained as random:NAME
        return ["random" + model_family.removeprefix("exlm")] if model_family[:4] == "exlm" else []
    if key == "mlm":
        return sorted(f for f in present if f.split(":")[0] == "mlm" and "&" not in f)
    return [key]


def with_section(card: str, section: str) -> str:
    """``card`` with its section of ``section``'s title replaced by ``section`` (up to the next
    section of the same level), or ``section`` appended."""
    title = section.splitlines()[0]
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(card):
        return pattern.sub(lambda _: section + "\n", card, count=1).rstrip("\n") + "\n"
    return card.rstrip("\n") + "\n\n" + section
