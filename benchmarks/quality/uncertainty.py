"""How far a fine-tuned model's uncertainty can be trusted, on MoleculeNet.

For each set and seed of the suite's seeded scaffold split (`random_scaffold`, 80/10/10), the
model is fine-tuned as ``exlm-chem finetune --ensemble N`` does it (the learning rate chosen on
the validation part among --lr, then N - 1 more members at that rate), calibrated and given its
applicability domain on the validation part, and measured on the test part:
- regression: the empirical coverage of the intervals and their mean width, and the Spearman
  correlation between the ensemble's spread and the absolute error (pooled over seeds, with a
  95% bootstrap interval over molecules);
- classification: the expected calibration error before and after temperature scaling;
- both: the error (RMSE, or 1 - ROC-AUC) of in-domain and out-of-domain molecules, and the
  ensemble's score beside its first member's (a single run at the same rate).
With --calibration folds, the members are trained and calibrated on scaffold folds of the
training and validation parts instead (`exlm_chem.finetuning.folds`); write those runs to
another --out.

Each (set, seed) is one line of OUT/runs.jsonl with its test predictions in
OUT/predictions/SET-SEED.npz; a finished one is skipped when the script runs again, a run under
way continues from its checkpoints (--checkpoints, under runs/). OUT/results.md is written from
what is there, every time.

    EXLM_DATA_DIR=../shared/data python benchmarks/quality/uncertainty.py \
        --sets esol,freesolv,lipo,bbbp,bace,clintox --seeds 0,1,2,3,4 --members 5 \
        --out benchmarks/results/uncertainty
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: common
from common import shared_data_dir  # noqa: E402

BOOTSTRAP = 1000


def run_one(name, seed, model, featurizer, args) -> dict:
    from exlm_chem.finetune_settings import FinetuneSettings, UncertaintySettings
    from exlm_chem.finetuning import (
        EncodedMolecules,
        LabelledMolecules,
        finetune_ensemble,
    )
    from exlm_chem.finetuning.reliability import evaluate_uncertainty
    from exlm_chem.metrics import score
    from exlm_chem.moleculenet.datasets import DATASETS, load_dataset, split_dataset
    from exlm_chem.moleculenet.features import ReadableRows

    task_type = DATASETS[name].task_type
    _, dataset = load_dataset(name, ReadableRows(featurizer), args.data_dir, args.cache)
    parts = []
    for part in split_dataset(dataset, "random_scaffold", seed):
        smiles = list(part.ids)
        y = np.where(part.w > 0, part.y, np.nan)
        parts.append(
            LabelledMolecules(EncodedMolecules.from_smiles(smiles, model.tokenizer), y, smiles)
        )
    train, valid, test = parts
    start = time.process_time(), time.perf_counter()
    checkpoints = args.checkpoints / f"{name}-{seed}"
    fitted, best, runs, members = finetune_ensemble(
        model, train, valid, task_type, FinetuneSettings(seed=seed),
        UncertaintySettings(members=args.members, calibration=args.calibration), args.lr,
        jobs=args.jobs,
        checkpoint_dir=checkpoints,
    )  # fmt: skip
    predictions = fitted.predict(test.molecules, test.smiles)
    y0 = np.nan_to_num(test.y)
    single = predictions.first_member
    arrays = dict(
        y=test.y,
        value=predictions.value,
        single=single,
        max_tanimoto=predictions.similarities.max_tanimoto,
        max_cosine=predictions.similarities.max_cosine,
        in_domain=predictions.in_domain,
    )
    for field in ("spread", "low", "high", "uncalibrated"):
        if getattr(predictions, field) is not None:
            arrays[field] = getattr(predictions, field)
    np.savez(args.out / "predictions" / f"{name}-{seed}.npz", **arrays)
    for path in checkpoints.glob("*.pt"):
        path.unlink()
    return dict(
        dataset=name,
        seed=seed,
        model=model.name,
        task_type=task_type,
        learning_rate=best.settings.learning_rate,
        members=members,
        test_score=score(task_type, y0, test.w, predictions.value),
        single_member_test_score=score(task_type, y0, test.w, single),
        domain_threshold=fitted.domain.threshold,
        temperatures=[t.temperature for t in fitted.calibration.tasks],
        interval_kinds=[t.kind for t in fitted.calibration.tasks],
        cpu_seconds=round(time.process_time() - start[0], 1),
        wall_seconds=round(time.perf_counter() - start[1], 1),
        **evaluate_uncertainty(task_type, test.y, predictions),
    )


def spearman_interval(spread: np.ndarray, errors: np.ndarray, seed: int = 0):
    """Spearman's rho and its 95% percentile bootstrap interval over molecules."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    rho = spearmanr(spread, errors).statistic
    draws = []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(errors), len(errors))
        draws.append(spearmanr(spread[rows], errors[rows]).statistic)
    return float(rho), *np.nanpercentile(draws, [2.5, 97.5]).tolist()


def summarize(out: Path, command: str) -> str:
    from exlm_chem.finetuning.calibration import expected_calibration_error
    from exlm_chem.finetuning.reliability import evaluate_uncertainty

    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    lines = [
        "# Uncertainty of fine-tuned models on MoleculeNet (test parts)",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    by_set: dict[str, list[dict]] = {}
    for r in records:
        by_set.setdefault(r["dataset"], []).append(r)
    regression = [s for s, rs in by_set.items() if rs[0]["task_type"] == "regression"]
    classification = [s for s in by_set if s not in regression]
    if regression:
        lines += [
            "## Regression: 90% intervals and the spread",
            "",
            "| set | seeds | coverage (mean, min-max) | mean width | spread-error Spearman [95% CI]"
            " | coverage in / out of domain | RMSE in / out of domain (molecules)"
            " | RMSE ensemble / single run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in regression:
            rs, arrays = seed_arrays(out, name, by_set[name])
            spread = np.concatenate([a["spread"][~np.isnan(a["y"])] for a in arrays])
            errors = np.concatenate(
                [np.abs(a["value"] - a["y"])[~np.isnan(a["y"])] for a in arrays]
            )
            rho, low, high = spearman_interval(spread, errors)
            report = evaluate_uncertainty("regression", *pooled_predictions(arrays))
            inside, outside = _domain_errors(report)
            coverages = [r["coverage"] for r in rs]
            lines.append(
                f"| {name} | {len(rs)} | {np.mean(coverages):.3f} ({min(coverages):.2f}-"
                f"{max(coverages):.2f}) | {np.mean([r['mean_width'] for r in rs]):.3f} | "
                f"{rho:+.3f} [{low:+.3f}, {high:+.3f}] | {report['in_domain_coverage']:.3f} / "
                f"{report['out_of_domain_coverage']:.3f} | "
                f"{inside} / {outside} | "
                f"{np.mean([r['test_score'] for r in rs]):.3f} / "
                f"{np.mean([r['single_member_test_score'] for r in rs]):.3f} |"
            )
        lines += [
            "",
            "Coverage by split: the intervals are as wide as the errors they were calibrated"
            " on (the validation part's, or with --calibration folds each member's fold's), so"
            " a split whose calibration molecules are easier than its test part covers less.",
            "",
            "| set | seed | calibration RMSE (members' mean) | test RMSE (ensemble)"
            " | test / calibration | coverage |",
            "|---|---|---|---|---|---|",
        ]
        for name in regression:
            for r in sorted(by_set[name], key=lambda r: r["seed"]):
                valid = np.mean([m["valid_score"] for m in r["members"]])
                lines.append(
                    f"| {name} | {r['seed']} | {valid:.3f} | {r['test_score']:.3f} | "
                    f"{r['test_score'] / valid:.2f} | {r['coverage']:.3f} |"
                )
        lines.append("")
    if classification:
        lines += [
            "## Classification: calibration",
            "",
            "| set | seeds | ECE before | ECE after | lower after in | 1 - ROC-AUC in / out of "
            "domain (molecules) | ROC-AUC ensemble / single run |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in classification:
            rs, arrays = seed_arrays(out, name, by_set[name])
            before = [expected_calibration_error(a["uncalibrated"], a["y"]) for a in arrays]
            after = [expected_calibration_error(a["value"], a["y"]) for a in arrays]
            inside, outside = _domain_errors(
                evaluate_uncertainty("classification", *pooled_predictions(arrays))
            )
            lines.append(
                f"| {name} | {len(rs)} | {np.mean(before):.4f} | {np.mean(after):.4f} | "
                f"{sum(a < b for a, b in zip(after, before))} of {len(rs)} seeds | "
                f"{inside} / {outside} | {np.mean([r['test_score'] for r in rs]):.3f} / "
                f"{np.mean([r['single_member_test_score'] for r in rs]):.3f} |"
            )
        lines.append("")
    for name, rs in by_set.items():
        plot_pooled(out, name, rs)
    cpu = sum(r["cpu_seconds"] for r in records)
    lines += [
        f"Runs: {len(records)} (set, seed) pairs, {cpu / 3600:.2f} CPU hours in this process "
        "(fine-tuning, calibration, domain and test predictions; with --jobs above 1 the "
        "workers' time is not counted).",
        "",
        "Domain errors pool the test molecules of every seed (in-domain: max Tanimoto on ECFP4 "
        "to the training molecules at least the threshold set on validation).",
        "",
    ]
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    return text


def seed_arrays(out: Path, name: str, records: list[dict]) -> tuple[list[dict], list]:
    """A set's records in seed order, and each one's saved test predictions."""
    records = sorted(records, key=lambda r: r["seed"])
    return records, [np.load(out / "predictions" / f"{name}-{r['seed']}.npz") for r in records]


def plot_pooled(out: Path, name: str, records: list[dict]) -> None:
    """The reliability plot `finetune` draws, on the test molecules of every seed pooled:
    OUT/reliability_SET.png."""
    from exlm_chem.finetuning.reliability import plot_reliability

    records, arrays = seed_arrays(out, name, records)
    y, predictions = pooled_predictions(arrays)
    title = f"{name}, test parts of {len(records)} scaffold splits ({len(y)} molecules)"
    plot_reliability(
        records[0]["task_type"], y, predictions, out / f"reliability_{name}.png", title
    )


def pooled_predictions(arrays: list) -> tuple:
    """The targets and predictions of every seed's test molecules, pooled."""
    from exlm_chem.finetuning import Predictions

    pooled = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0].files}
    predictions = Predictions(
        pooled["value"], pooled.get("spread"), pooled.get("low"), pooled.get("high"),
        pooled.get("uncalibrated"), in_domain=pooled["in_domain"].astype(bool),
    )  # fmt: skip
    return pooled["y"], predictions


def _domain_errors(report: dict) -> tuple[str, str]:
    """The error (RMSE, or 1 - ROC-AUC) and count of in- and out-of-domain molecules."""
    cells = []
    for name in ("in_domain", "out_of_domain"):
        count, error = report[f"{name}_molecules"], report[f"{name}_error"]
        cells.append(
            "- (0)" if count == 0 else f"{np.nan if error is None else error:.3f} ({count})"
        )
    return cells[0], cells[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="esol,freesolv,lipo,bbbp,bace,clintox")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--lr", default="1e-4,3e-4", help="rates chosen among on validation")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--calibration", default="validation", help="validation or folds (`finetune --calibration`)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/uncertainty"))
    parser.add_argument("--cache", type=Path, default=Path("runs/moleculenet-cache"))
    parser.add_argument(
        "--checkpoints", type=Path, default=Path("runs/uncertainty-checkpoints"),
        help="where a run under way keeps its state (not the results folder)",
    )  # fmt: skip
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    args.lr = [float(x) for x in args.lr.split(",")]
    args.data_dir = shared_data_dir() / "moleculenet" if shared_data_dir() else None
    (args.out / "predictions").mkdir(parents=True, exist_ok=True)
    command_file = args.out / "command.txt"  # the command that made the runs
    if not args.summarize_only:
        command_file.write_text(
            "EXLM_DATA_DIR=../shared/data python benchmarks/quality/uncertainty.py "
            + " ".join(sys.argv[1:])
        )
    command = command_file.read_text() if command_file.exists() else ""
    runs_path = args.out / "runs.jsonl"
    done = set()
    if runs_path.exists():
        done = {(r["dataset"], r["seed"]) for r in map(json.loads, runs_path.open())}
    if not args.summarize_only:
        from exlm_chem import ExLMFeaturizer, load_model
        from exlm_chem.outputs import atomic_write_text

        model = load_model(args.model)
        made_with = {r.get("model") for r in map(json.loads, runs_path.open())} if done else set()
        if made_with - {model.name}:
            sys.exit(
                f"{runs_path} holds runs of {', '.join(sorted(map(str, made_with)))}, not "
                f"{model.name}: pass --model with that model, or another --out"
            )
        featurizer = ExLMFeaturizer(model)
        for name in args.sets.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (name, seed) in done:
                    continue
                record = run_one(name, seed, model, featurizer, args)
                kept = runs_path.read_text() if runs_path.exists() else ""
                atomic_write_text(runs_path, kept + json.dumps(record) + "\n")
                print(json.dumps({k: v for k, v in record.items() if k != "members"}), flush=True)
    if runs_path.exists():
        print(summarize(args.out, command))


if __name__ == "__main__":
    main()
