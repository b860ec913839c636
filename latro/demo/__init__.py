"""The built-in demonstration: `latro train` with no model trains the shipped hidden reasoner.

    latro train                 # 4-7 minutes on a 2-core CPU, no download, no GPU
    latro train --seed 1        # any setting can still be overridden

The shipped model (latro/demo/model, pre-trained by `python -m latro.demo.pretrain`) has seen
step-by-step solutions of the synthetic `arithmetic` task but usually answers without them, so
its greedy accuracy is low while its samples that write the steps are mostly right. LaTRO, with
question + final answer pairs only (never the gold steps), rewards the rationales after which
the model itself finds the gold answer likely. The run reports greedy, maj@8 and pass@8 on the
500 held-out test questions before and after training, with exactly the settings of
`latro eval`, so that command reproduces the numbers.
"""

from __future__ import annotations

from pathlib import Path

from latro import checkpoint as ckpt
from latro.config import EvalConfig, TrainConfig

MODEL_DIR = Path(__file__).parent / "model"

# Settings of the demonstration. Method settings are the paper's (K, temperature, gamma, answer
# weight, one step per batch, no warm-up); the learning rate and KL weight suit a 2M-parameter
# model, not the paper's 7B ones, and L fits the task's short solutions.
PRESET = dict(
    model=str(MODEL_DIR), task="arithmetic", output_dir="runs/demo", num_samples=8, questions_per_step=8,
    max_rationale_tokens=64, beta=0.05, lr=1e-4, lr_schedule="constant", max_steps=60, eval_every=10,
    eval_on_start=True, eval_limit=0, eval_max_new_tokens=96, eval_batch_size=64, save_every=20,
)


def writes_steps(completion: str) -> bool:
    """Whether an `arithmetic` answer shows its work (an equation) before the final answer."""
    head = completion.split("The answer is", 1)[0]
    return "=" in head


def steps_breakdown(result: dict) -> dict:
    """Accuracy of the sampled answers that write the steps vs those that skip them."""
    counts = {True: [0, 0], False: [0, 0]}
    for record in result["records"]:
        for s in record.get("samples", []):
            tally = counts[writes_steps(s["completion"])]
            tally[0] += s["correct"]
            tally[1] += 1
    return {("with_steps" if k else "without_steps"): {"accuracy": c / n if n else None, "samples": n}
            for k, (c, n) in counts.items()}


def free_run_dir(path: str) -> str:
    """`path`, or path-2, path-3, ... when it already holds a run."""
    candidate, n = Path(path), 1
    while ckpt.run_files(candidate):
        n += 1
        candidate = Path(f"{path}-{n}")
    return str(candidate)


def _evaluate_test(trainer, name: str, limit: int | None) -> dict:
    from latro.evaluate import evaluate

    ev = EvalConfig()  # the defaults of `latro eval`, so that command gives the same numbers
    result = evaluate(trainer.policy, trainer.tokenizer, trainer.task, trainer.task.load("test")[:limit],
                      samples=ev.samples, temperature=ev.sample_temperature, max_new_tokens=ev.max_new_tokens,
                      batch_size=ev.batch_size, chat_template=trainer.cfg.chat_template, seed=ev.seed)
    result["steps"] = steps_breakdown(result)
    out = trainer.run_dir / "evaluations"
    out.mkdir(parents=True, exist_ok=True)
    ckpt.write_text(out / f"test-{name}.json", ckpt.dumps(result, indent=1))
    return result


def run_demo(cfg: TrainConfig, test_limit: int | None = None) -> dict:
    from latro.algorithms import build_trainer
    from latro.plots import plot_run

    method = "LaTRO" if cfg.reward == "latro" else f"Reward {cfg.reward!r}"
    from latro.rewards import parse_rewards

    names = {reward.name for reward, _ in parse_rewards(cfg.reward)}
    labels = "questions and final answers" if names & {"latro", "gold"} else "questions alone"
    print(f"No --model given: running the built-in demonstration. {method} trains the shipped {MODEL_DIR.name} "
          f"model ({MODEL_DIR}) on the synthetic '{cfg.task}' task, from {labels} (no gold steps).\n"
          f"Run directory: {cfg.output_dir}", flush=True)
    trainer = build_trainer(cfg)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    if trainer.step_index == 0 and not cfg.resume:
        print("Evaluating the base model on the held-out test questions...", flush=True)
    base = _evaluate_test(trainer, "base", test_limit)
    trainer.train()  # a stop by signal raises RunStopped: no test evaluation of an unfinished model
    print("Evaluating the trained model on the held-out test questions...", flush=True)
    final = _evaluate_test(trainer, "final", test_limit)
    plot_run(trainer.run_dir, {"test, base -> trained": ([0, trainer.step_index],
                                                        [base["metrics"]["greedy"], final["metrics"]["greedy"]])})
    summary = {"reward": cfg.reward, "test_questions": base["n"], "steps": trainer.step_index, "base": base["metrics"],
               "trained": final["metrics"], "base_steps": base["steps"], "trained_steps": final["steps"]}
    ckpt.write_text(trainer.run_dir / "demo-summary.json", ckpt.dumps(summary, indent=1))
    print(format_table(summary))
    print(f"Plots: {trainer.run_dir}/accuracy.png, reward.png, rationale_length.png, diagnostics.png")
    return summary


def format_table(summary: dict) -> str:
    keys = list(summary["base"])
    rows = [("base (shipped)", summary["base"]),
            (f"after {summary.get('reward', 'latro')} ({summary['steps']} steps)", summary["trained"])]
    width = max(28, *(len(label) + 2 for label, _ in rows))
    lines = [f"\nHeld-out test, {summary['test_questions']} questions:",
             f"  {'model':<{width}}" + "".join(f"{k:>9}" for k in keys)]
    for label, metrics in rows:
        lines.append(f"  {label:<{width}}" + "".join(f"{100 * metrics[k]:8.1f}%" for k in keys))
    for label, part in [("base", summary["base_steps"]), ("trained", summary["trained_steps"])]:
        w, wo = part["with_steps"], part["without_steps"]
        fmt = lambda p: "-" if p["accuracy"] is None else f"{100 * p['accuracy']:.1f}% of {p['samples']}"
        lines.append(f"  {label} samples at T=1 correct: with steps {fmt(w)}, without steps {fmt(wo)}")
    return "\n".join(lines)
