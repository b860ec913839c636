"""PNG plots of a run directory: held-out accuracy, mean reward, rationale length, and the
self-reward diagnostics (sampled-answer accuracy, reward AUROC, answers per group) per step.

    python -m latro.plots runs/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def plot_run(run_dir: str | Path, extra_accuracy: dict[str, tuple[list[int], list[float]]] | None = None) -> list[Path]:
    """Write accuracy.png, reward.png, rationale_length.png and diagnostics.png into the run directory.

    `extra_accuracy` adds named (steps, accuracies) series to the accuracy plot, e.g. test
    accuracy before and after training."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen needed
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = _read_metrics(run_dir)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=120)
        plt.close(fig)
        written.append(run_dir / name)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    val = [(r["step"], r["validation_accuracy"]) for r in rows if "validation_accuracy" in r]
    if val:
        ax.plot(*zip(*val), marker="o", label="validation (greedy)")
    for name, (steps, accs) in (extra_accuracy or {}).items():
        ax.plot(steps, accs, marker="s", linestyle="--", label=name)
    ax.set(xlabel="optimizer step", ylabel="accuracy", ylim=(0, 1), title="Held-out greedy accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "accuracy.png")

    for key, name, label in [("reward_mean", "reward.png", "mean reward"),
                             ("rationale_tokens", "rationale_length.png", "rationale length (tokens)")]:
        points = [(r["step"], r[key]) for r in rows if key in r]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(*zip(*points))
        ax.set(xlabel="optimizer step", ylabel=label, title=label[0].upper() + label[1:])
        ax.grid(alpha=0.3)
        save(fig, name)

    if any("sample_accuracy" in r for r in rows):
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, label in [("sample_accuracy", "sampled answers correct"),
                           ("reward_auroc_in_group", "reward AUROC (right vs wrong, same question)"),
                           ("majority_agreement", "majority answer = gold")]:
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                left.plot(*zip(*points), label=label)
        left.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        left.set(xlabel="optimizer step", ylim=(0, 1), title="Can the reward be trusted?")
        left.legend(fontsize=8)
        left.grid(alpha=0.3)
        right.plot([r["step"] for r in rows if "distinct_answers" in r],
                   [r["distinct_answers"] for r in rows if "distinct_answers" in r])
        right.set(xlabel="optimizer step", ylabel="distinct answers per question",
                  title="Answer diversity (collapse -> 1)")
        right.grid(alpha=0.3)
        save(fig, "diagnostics.png")
    return written


if __name__ == "__main__":
    for path in plot_run(sys.argv[1] if len(sys.argv) > 1 else "runs/latro"):
        print(path)
