"""The `latro` command line: train, sft, eval, bench, dgdiff.

    latro train                      # no model: the built-in demonstration (see latro/demo)
    latro train --model HuggingFaceTB/SmolLM2-135M-Instruct --task gsm8k --data-dir data/gsm8k
    latro eval --model runs/latro/model --task gsm8k --split test --limit 200 --samples 8
    latro bench --model model.gguf --task gsm8k --data-dir data/gsm8k
    latro dgdiff --model runs/latro/model --task arithmetic --limit 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from latro import config as C
from latro.checkpoint import DiskFullError, RunError, RunStopped
from latro.errors import UserError


def _train(args) -> None:
    from latro.algorithms import build_trainer

    cfg = C.from_args(C.TrainConfig, args)
    if cfg.model is None:  # a newcomer's first command: the built-in demonstration
        from latro import demo

        cfg = C.from_args(C.TrainConfig, args, preset=demo.PRESET)
        if "output_dir" not in vars(args):
            cfg.output_dir = demo.free_run_dir(cfg.output_dir)
        demo.run_demo(cfg)
        return
    build_trainer(cfg).train()


def _sft(args) -> None:
    from latro.algorithms import build_trainer

    cfg = C.from_args(C.TrainConfig, args)
    if cfg.model is None:
        raise UserError("latro sft needs --model: a hub id, local directory or .gguf file")
    build_trainer(cfg, "sft").train()


def _load_for_evaluation(cfg, command: str):
    """(task, questions of the split, model, tokenizer) for `latro eval` and `latro dgdiff`."""
    from latro.modeling import load_model, load_tokenizer
    from latro.prompts import first_prompt
    from latro.tasks import task_from_config

    if not cfg.model:
        raise UserError(f"latro {command} needs --model: a hub id, local directory or .gguf file")
    task = task_from_config(cfg)
    examples = task.load(cfg.split)
    task.prompt_format.refuse_overlap(examples, cfg.split)
    examples = examples[: cfg.limit or None]
    model = load_model(cfg.model, cfg.dtype, cfg.trust_remote_code)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, cfg.trust_remote_code)
    print(f"prompt of the first question:\n{first_prompt(tokenizer, task, examples, cfg.chat_template)}\n")
    return task, examples, model, tokenizer


def _eval(args) -> None:
    from accelerate import Accelerator

    from latro.card import add_evaluation
    from latro.engines import evaluation_engine
    from latro.evaluate import evaluate, results_file

    cfg = C.from_args(C.EvalConfig, args)
    accelerator = Accelerator()  # one process, or a shard of the questions each under `accelerate launch`
    task, examples, model, tokenizer = _load_for_evaluation(cfg, "eval")
    if accelerator.num_processes > 1:
        model.to(accelerator.device)
    with evaluation_engine(cfg, tokenizer, model, accelerator) as engine:
        result = evaluate(model, tokenizer, task, examples, samples=cfg.samples, temperature=cfg.sample_temperature,
                          max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                          chat_template=cfg.chat_template, seed=cfg.seed, accelerator=accelerator, progress=True,
                          engine=engine)
    if not accelerator.is_main_process:
        return
    if cfg.baseline:
        from latro.evaluate import paired_greedy, read_baseline

        result["vs_baseline"] = paired_greedy(result["records"], read_baseline(cfg.baseline), cfg.baseline)
    out = Path(cfg.output) if cfg.output else _default_eval_path(cfg)
    samples_path = out.with_name(f"samples_{out.stem}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(samples_path, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in result["records"])
    report = results_file(cfg, task, examples, result, samples_path, accelerator.num_processes, tokenizer)
    out.write_text(json.dumps(report, indent=1))
    print(f"{cfg.task} {cfg.split}: {_counted(result)}")
    for name, value in result["metrics"].items():
        low, high = result["ci95"][name]
        stderr = result["stderr"][name]
        spread = "" if stderr is None else f" ± {100 * stderr:.1f} (stderr), 95% CI [{100 * low:.1f}, {100 * high:.1f}]"
        print(f"  {name:>8}: {100 * value:.1f}%{spread}")
    if "vs_baseline" in result:
        paired = result["vs_baseline"]
        print(f"  against {cfg.baseline}: greedy {100 * paired['baseline_greedy']:.1f}% -> "
              f"{100 * paired['greedy']:.1f}% ({100 * paired['difference']:+.1f} points on {paired['n']} questions; "
              f"{paired['gains']} gained, {paired['losses']} lost; exact McNemar p = {paired['p_mcnemar']:.3g})")
    print(f"written to {out} (each question in {samples_path.name})")
    if add_evaluation(cfg.model, cfg.task, cfg.split, result):
        print(f"added to the model card {Path(cfg.model) / 'README.md'}")


def _counted(result: dict) -> str:
    """How many questions the numbers are over, and how many were skipped."""
    if not result["skipped"]:
        return f"{result['n']} questions"
    return (f"{result['n'] + result['skipped']} questions, {result['skipped']} skipped (prompt longer than the "
            f"model's context); the numbers are over the {result['n']} evaluated")


def _default_eval_path(cfg, kind: str = "eval") -> Path:
    """./eval-results/<model>/<kind>-<task>-<split>.json: in the working directory, never inside an
    installed package (where a shipped model such as latro/demo/model lives)."""
    model = Path(cfg.model.rstrip("/"))
    name = "__".join(model.parts[-2:]) if not model.exists() else model.name  # hub "org/name" -> org__name
    return Path("eval-results") / name / f"{kind}-{cfg.task}-{cfg.split}.json"


def _dgdiff(args) -> None:
    import dataclasses

    from latro.dgdiff import format_table, run_dgdiff
    from latro.engines import evaluation_engine
    from latro.prompts import first_prompt

    cfg = C.from_args(C.DGDiffConfig, args)
    task, examples, model, tokenizer = _load_for_evaluation(cfg, "dgdiff")
    with evaluation_engine(cfg, tokenizer, model, stop_patterns=cfg.stop_patterns) as engine:
        result = run_dgdiff(model, tokenizer, task, examples, cfg, engine)
    out = Path(cfg.output) if cfg.output else _default_eval_path(cfg, "dgdiff")
    out.parent.mkdir(parents=True, exist_ok=True)
    prompt = first_prompt(tokenizer, task, examples, cfg.chat_template)
    out.write_text(json.dumps({"config": dataclasses.asdict(cfg), "first_prompt": prompt, **result}, indent=1))
    print(format_table(result, f"DG-DIFF, {cfg.model} on {cfg.task} {cfg.split}: {_counted(result)}, "
                               f"{cfg.candidates} candidates at T={cfg.temperature}"))
    print(f"written to {out}")


def _bench(args) -> None:
    from latro.bench import run_bench

    if args.steps < 1:
        raise UserError(f"--steps: got {args.steps}, expected an integer >= 1")
    run_bench(C.from_args(C.TrainConfig, args), repeats=args.steps, bare_parts=args.bare_parts, output=args.output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="latro", description="Self-rewarding reasoning training (LaTRO).")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="Train a causal LM with LaTRO (no --model: the built-in demonstration).")
    C.add_arguments(train, C.TrainConfig)
    train.set_defaults(run=_train)
    sft = sub.add_parser("sft", help="Supervised fine-tuning on gold rationales (the paper's SFT baseline).")
    C.add_arguments(sft, C.TrainConfig)
    sft.set_defaults(run=_sft)
    ev = sub.add_parser("eval", help="Greedy accuracy, maj@K and pass@K on a task split.")
    C.add_arguments(ev, C.EvalConfig)
    ev.set_defaults(run=_eval)
    bench = sub.add_parser("bench", help="Time training steps per phase against bare transformers parts.")
    C.add_arguments(bench, C.TrainConfig)
    bench.add_argument("--steps", type=int, default=5, help="Training steps to time.")
    bench.add_argument("--bare-parts", action=argparse.BooleanOptionalAction, default=True,
                       help="Also time the bare transformers parts of each step (about as long again as the steps).")
    bench.add_argument("--output", help="JSON file for the result (default: bench.json in a new temporary directory).")
    bench.set_defaults(run=_bench)
    dg = sub.add_parser("dgdiff", help="Generation vs discrimination (SELF-[IN]CORRECT): does the model pick "
                                       "its right answers better than chance?")
    C.add_arguments(dg, C.DGDiffConfig)
    dg.set_defaults(run=_dgdiff)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except RunStopped as stop:  # 128 + signal number: the shell's convention, on which schedulers requeue
        print(f"latro {args.command}: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except (UserError, FileNotFoundError, FileExistsError, RunError, DiskFullError) as err:
        if args.debug or os.environ.get("LATRO_DEBUG", "") not in ("", "0"):
            raise
        print(f"latro: error: {one_line(err)}", file=sys.stderr)
        # 2: the input was wrong (usage); 1: the run itself failed (non-finite steps, full disk)
        raise SystemExit(1 if isinstance(err, (RunError, DiskFullError)) else 2) from None


def one_line(err: Exception) -> str:
    """An expected error as one line: the message, or for an OS error 'path: reason'."""
    if isinstance(err, OSError) and err.filename is not None and not isinstance(err, DiskFullError):
        return f"{err.filename}: {err.strerror}"
    return str(err).replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
