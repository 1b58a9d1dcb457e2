"""What a run tells: metrics.jsonl, a progress bar (plain lines in a log), curves.png."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..environment import allocator_in_use, describe_hardware
from ..outputs import atomic_path, atomic_write_text


class Window:
    """Loss, tokens and dropped molecules summed over the steps since the last log line."""

    def __init__(self):
        self.tokens, self.loss, self.steps, self.dropped = 0, 0.0, 0, 0
        self.parts: dict = {}  # the token and descriptor losses, logged apart
        self.start = time.perf_counter()

    def add(self, loss, tokens: int, dropped, parts: dict | None = None) -> None:
        """loss and dropped may be device tensors: read only when a line is logged."""
        self.loss += loss
        self.tokens += tokens
        self.steps += 1
        self.dropped += dropped
        for name, value in (parts or {}).items():
            self.parts[name] = self.parts.get(name, 0.0) + value

    def metrics(self) -> dict:
        return {
            "loss": float(self.loss) / self.steps,
            **{name: float(value) / self.steps for name, value in self.parts.items()},
            "tokens_per_second": self.tokens / (time.perf_counter() - self.start),
            "dropped": int(self.dropped),
        }


class RunLog:
    """metrics.jsonl, a progress bar (or plain lines when not on a terminal), and curves.png.

    total_steps: the bar's length when the run's budget is a number of steps, else None.
    """

    def __init__(self, out: Path, active: bool, total_steps: int | None, start_step: int):
        self.out, self.active = out, active
        self.bar = None
        if active and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self.last_step = start_step
        metrics = out / "metrics.jsonl"
        if active and metrics.exists():
            # A resumed run drops what was logged after its checkpoint; it will log it again.
            kept = [
                line
                for line in metrics.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= start_step
            ]
            atomic_write_text(metrics, "".join(line + "\n" for line in kept))

    def message(self, text: str) -> None:
        if self.active:
            (self.bar.write if self.bar else lambda t: print(t, file=sys.stderr, flush=True))(text)

    def record(self, metrics: dict) -> None:
        if not self.active:
            return
        # Strict JSON: a value that is not finite is written as null, never NaN.
        finite = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in metrics.items()
        }
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(finite, allow_nan=False) + "\n")
        remaining = (1 - metrics["progress"]) * metrics["elapsed"] / max(metrics["progress"], 1e-9)
        speed = metrics["tokens_per_second"]
        summary = f"loss {metrics['loss']:.4f}  {speed:,.0f} tok/s  lr {metrics['lr']:.2e}"
        if "descriptor_loss" in metrics:
            summary += f"  descriptors {metrics['descriptor_loss']:.4f}"
        if "val_accuracy" in metrics:
            summary += f"  val_acc {metrics['val_accuracy']:.4f}"
        if "val_descriptor_loss" in metrics:
            summary += f"  val_descriptors {metrics['val_descriptor_loss']:.4f}"
        if self.bar is not None:
            self.bar.update(metrics["step"] - self.last_step)
            self.bar.set_postfix_str(summary)
        else:
            print(
                f"step {metrics['step']}  {summary}  {metrics['progress']:.1%} done, eta "
                f"{remaining / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )
        self.last_step = metrics["step"]
        if "val_loss" in metrics:
            plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(
    metrics_path: Path | Sequence[Path], png_path: Path, labels: Sequence[str] = ()
) -> None:
    """Training loss, validation accuracy and (for runs with a descriptor head) the
    validation descriptor loss, against tokens seen (one or several runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = metrics_path if isinstance(metrics_path, (list, tuple)) else [metrics_path]
    runs = [read_metrics(path) for path in paths]
    panels = [("loss", "training loss"), ("val_accuracy", "validation masked-token accuracy")]
    if any("val_descriptor_loss" in row for rows in runs for row in rows):
        panels.append(("val_descriptor_loss", "validation descriptor loss (scaled MSE)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, title) in zip(axes, panels):
        for i, rows in enumerate(runs):
            points = [r for r in rows if r.get(key) is not None]
            label = labels[i] if i < len(labels) else None
            ax.plot(
                [r["tokens"] for r in points], [r[key] for r in points],
                marker=None if key == "loss" else "o", label=label,
            )  # fmt: skip
        ax.set(xlabel="tokens seen", title=title)
        if labels:
            ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def describe_run(config, model, precision, dist, corpus_stats, training_molecules, log) -> None:
    """run.json, and the run's first log line."""
    run_info = {
        "pretrain": config.to_json(),
        "model": model.config.to_dict(),
        "parameters": model.num_parameters(),
        "precision": precision,
        "world_size": dist.world_size,
        "hardware": describe_hardware(dist.device),
        "allocator": allocator_in_use(),
        "corpus": {k: v for k, v in corpus_stats.items() if k != "token_counts"},
    }
    atomic_write_text(config.out / "run.json", json.dumps(run_info, indent=2))
    log.message(
        f"{config.objective} {config.preset} ({model.num_parameters():,} parameters), "
        f"{training_molecules:,} training molecules "
        f"({corpus_stats['invalid_rdkit']} invalid SMILES skipped), {precision}, "
        f"{dist.world_size} process(es), device {dist.device}"
    )
