"""``exlm-chem benchmark``: MoleculeNet, side by side with the baselines."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from ..finetune_settings import FinetuneSettings
from .app import show_progress_messages
from .finetune import DEFAULT_RATES, _default


def benchmark(
    datasets: str = typer.Option(
        "bbbp,bace,clintox,tox21,toxcast,sider,esol,freesolv,lipo",
        help="Comma-separated MoleculeNet sets: bbbp, bace, clintox, tox21, toxcast, sider, "
        "hiv, muv, esol, freesolv, lipo.",
    ),
    data_dir: Path | None = typer.Option(
        None, help="Folder with the MoleculeNet files (DeepChem downloads what is missing)."
    ),
    features: str = typer.Option(
        "exlm,ecfp,random",
        help="exlm[:DIR][READ-OUT], ecfp (ECFP4 bits), ecfp-count (Morgan counts), rdkit2d, "
        "random[:DIR][READ-OUT], mlm:DIR[READ-OUT], chemprop (trained from scratch on each "
        "split; pip install 'exlm-chem[bench]'), comma-separated; joins with &: exlm&ecfp, "
        "exlm&ecfp-count&rdkit2d, ecfp-count&rdkit2d. READ-OUT: layers (default), mean, cls "
        "or several (mean+cls), e.g. exlm[cls].",
    ),
    probe: str = typer.Option(
        "logreg",
        help="Probes on frozen features: logreg, rf (500 trees), mlp, deepchem "
        "(comma-separated); none for no probe (fine-tuning or chemprop only).",
    ),
    finetune: bool = typer.Option(
        False,
        "--finetune",
        help="Also fine-tune each model end to end (the learning rate chosen on validation "
        "averaged over the seeds).",
    ),
    finetune_lr: str = typer.Option(
        DEFAULT_RATES, help="Fine-tuning learning rates (comma-separated grid)."
    ),
    finetune_head: str = typer.Option(
        _default("head"),
        help="Fine-tuning head: cls, mean or layers; several (comma-separated) are chosen on "
        "validation with the learning rate.",
    ),
    finetune_choice_seeds: str | None = typer.Option(
        None,
        help="Seeds whose validation chooses the head and learning rate (default: every seed); "
        "only they run the whole grid, the other seeds the choice (saves time on a CPU).",
    ),
    finetune_epochs: int = typer.Option(
        _default("epochs"), help="Fine-tuning: at most this many epochs."
    ),
    finetune_patience: int = typer.Option(
        _default("patience"), help="Fine-tuning: early-stopping patience."
    ),
    finetune_jobs: int = typer.Option(
        1,
        help="Fine-tuning runs at a time, in worker processes (on a CPU each on its share "
        "of the threads; on a GPU all on the device).",
    ),
    device: str | None = typer.Option(
        None, help="Fine-tuning device: cpu, cuda, cuda:N or auto (default: cpu)."
    ),
    split: str = typer.Option(
        "scaffold", help="scaffold (DeepChem's, deterministic) or random_scaffold (seeded)."
    ),
    seeds: str = typer.Option("0", help="Comma-separated seeds."),
    out: Path = typer.Option(..., help="Output folder: results.json/.csv/.md and plots."),
    cache_dir: Path | None = typer.Option(None, help="Featurized-data cache (default: OUT/cache)."),
    baselines_from: str | None = typer.Option(
        None,
        help="Benchmark folders (comma-separated) whose baseline results (fingerprints, "
        "descriptors, chemprop) are reused instead of computed again, e.g. "
        "benchmarks/results/moleculenet_baselines; made on the same MoleculeNet files.",
    ),
    resume: bool = typer.Option(
        False, help="Keep the results already in OUT/results.json; compute only the missing ones."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start again in an OUT that already holds results."
    ),
) -> None:
    """Run MoleculeNet benchmarks: ExLM next to ECFP4, MLM and the random-init control."""
    import logging

    # The MoleculeNet package imports DeepChem, slow to import: only for this command.
    from ..finetuning import HEADS
    from ..moleculenet.datasets import DATASETS
    from ..moleculenet.features import parse_features
    from ..moleculenet.probes import PROBES
    from ..moleculenet.suite import parse_list, run_benchmark
    from .finetune import parse_rates

    show_progress_messages()
    # DeepChem warns about optional back-ends it lacks (TensorFlow, JAX) and per-molecule
    # details; the benchmark reports the molecules kept per dataset instead.
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    seed_list = parse_seeds(seeds, "--seeds")
    run_benchmark(
        parse_list(datasets, DATASETS, "datasets"),
        parse_features(features),
        [] if probe == "none" else parse_list(probe, PROBES, "probes"),
        out,
        data_dir=data_dir,
        split=split,
        seeds=seed_list,
        finetune=finetune,
        cache_dir=cache_dir,
        resume=resume,
        overwrite=overwrite,
        finetune_settings=FinetuneSettings(epochs=finetune_epochs, patience=finetune_patience),
        finetune_rates=parse_rates(finetune_lr),
        device=device,
        finetune_heads=parse_list(finetune_head, HEADS, "fine-tuning heads"),
        finetune_choice_seeds=parse_seeds(finetune_choice_seeds, "--finetune-choice-seeds"),
        finetune_jobs=finetune_jobs,
        baselines_from=[Path(p) for p in (baselines_from or "").split(",") if p.strip()],
    )
    typer.echo(f"results in {out / 'results.md'}", err=True)


def parse_seeds(text: str | None, option: str) -> list[int]:
    """Comma-separated integers; InputError naming the option otherwise."""
    try:
        return [int(s) for s in (text or "").split(",") if s.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated integers, not {text!r}") from None
