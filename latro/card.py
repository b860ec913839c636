"""The model card (README.md) of a saved model, and the upload of a model to the Hugging Face Hub.

The card is rendered from `latro_run.json` beside it (the run's settings, method and results), so
that `latro eval` on the model directory can add its results and render the card again.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from latro.checkpoint import RunError

RUN_FILE = "latro_run.json"
LATRO_PAPER = ("LaTRO: Chen et al., 2024, *Language Models are Hidden Reasoners: Unlocking Latent Reasoning "
               "Capabilities via Self-Rewarding*, [arXiv:2411.04282](https://arxiv.org/abs/2411.04282)")
REWARD_PAPERS = {
    "covo": "CoVo, [arXiv:2506.08745](https://arxiv.org/abs/2506.08745)",
    "majority": "TTRL majority vote, [arXiv:2504.16084](https://arxiv.org/abs/2504.16084)",
    "self_certainty": "Intuitor self-certainty, [arXiv:2505.19590](https://arxiv.org/abs/2505.19590)",
}
HUB_DATASETS = {"gsm8k": "openai/gsm8k", "arc_challenge": "allenai/ai2_arc", "math": "EleutherAI/hendrycks_math"}


def method_text(info: dict) -> str:
    """What the run optimised, in a paragraph, with the papers it follows."""
    settings, resolved = info["settings"], info.get("resolved") or {}
    if info["algorithm"] == "sft":
        return ("Supervised fine-tuning on the task's gold rationales followed by \"The answer is ...\" (the SFT "
                f"baseline of {LATRO_PAPER}).")
    reward = settings.get("reward", "latro")
    names = [part.split(":")[0].strip() for part in reward.split(",")]
    text = (f"`latro train`: K={settings.get('num_samples')} rationales sampled per question at temperature "
            f"{settings.get('temperature')} (at most {settings.get('max_rationale_tokens')} tokens), each rewarded "
            f"by `{reward}`; advantages by the `{resolved.get('estimator', settings.get('estimator'))}` estimator; "
            f"KL to the initial model weighted by beta={resolved.get('beta', settings.get('beta'))}, in the "
            f"{resolved.get('kl_in', settings.get('kl_in'))}; AdamW at lr {settings.get('lr')}. ")
    if "latro" in names:
        text += ("The latro reward is the log-likelihood of the gold answer given the question and the sampled "
                 f"rationale, as in {LATRO_PAPER}.")
    cited = [REWARD_PAPERS[n] for n in names if n in REWARD_PAPERS]
    return text + (f" Rewards from: {'; '.join(cited)}." if cited else "")


def run_info(settings: dict, algorithm: str, validation: dict | None, resolved: dict | None = None) -> dict:
    """The contents of RUN_FILE for a model saved by a training run; `resolved`: the values the
    algorithm chose where a setting is left to its default (beta, estimator, kl_in)."""
    return {"algorithm": algorithm, "settings": settings, "resolved": resolved or {}, "validation": validation,
            "evaluations": []}


def render_card(info: dict) -> str:
    """README.md text: Hub metadata (huggingface_hub's ModelCardData), the method, results, settings."""
    from huggingface_hub import ModelCard, ModelCardData

    settings = info["settings"]
    base = settings.get("model")
    task = settings.get("task")
    data = ModelCardData(
        base_model=base if base and not Path(base).exists() else None,  # a hub id, not a local path
        library_name="transformers", pipeline_tag="text-generation",
        datasets=[HUB_DATASETS[task]] if task in HUB_DATASETS and not settings.get("data_dir") else None,
        tags=list(dict.fromkeys(t for t in ["latro", info["algorithm"], task] if t)))
    lines = [f"# {Path(settings.get('output_dir', 'model')).name}: {info['algorithm']} on {task}", "",
             f"Fine-tuned from `{base}` with the latro toolkit on the `{task}` task.", "",
             "## Method", "", method_text(info), "", "## Results", ""]
    lines += _results(info)
    lines += ["", "## Training settings", "", "The run's `config.yaml` (`latro train --config config.yaml` "
              "repeats it):", "", "```yaml", yaml.safe_dump(settings, sort_keys=False).rstrip(), "```", ""]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _results(info: dict) -> list[str]:
    rows = []
    validation = info.get("validation")
    if validation and validation.get("accuracy") is not None:
        rows.append(f"| {info['settings'].get('task')} | validation ({validation.get('questions') or 'all'} "
                    f"questions) | greedy accuracy | {100 * validation['accuracy']:.1f}% | step "
                    f"{validation.get('step')}{', ' + validation['note'] if validation.get('note') else ''} |")
    for ev in info.get("evaluations", []):
        for metric, value in ev["metrics"].items():
            rows.append(f"| {ev['task']} | {ev['split']} ({ev['n']} questions) | {metric} | {100 * value:.1f}% | "
                        f"latro eval, {ev['date']} |")
    if not rows:
        return ["Not evaluated yet: `latro eval --model <this directory>` adds its results here."]
    return ["| task | split | metric | value | when |", "|---|---|---|---|---|", *rows]


def card_files(info: dict) -> dict[str, str]:
    """File name -> text of the card and its source, for `save_model(extra=...)`."""
    return {"README.md": render_card(info), RUN_FILE: json.dumps(info, indent=1, default=str)}


def add_evaluation(model_dir: str | Path, task: str, split: str, result: dict) -> bool:
    """Add `latro eval`'s numbers to the card of a model directory latro saved (one with RUN_FILE);
    False, touching nothing, for any other model. A repeated task and split replaces the older numbers."""
    path = Path(model_dir) / RUN_FILE
    if not path.is_file():
        return False
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    today = datetime.date.today().isoformat()
    kept = [e for e in info.get("evaluations", []) if (e["task"], e["split"]) != (task, split)]
    info["evaluations"] = [*kept, {"task": task, "split": split, "n": result["n"], "metrics": result["metrics"],
                                   "date": today}]
    from latro.checkpoint import write_text

    for name, text in card_files(info).items():
        write_text(Path(model_dir) / name, text)
    return True


def push_model(directory: str | Path, repo: str, private: bool, message: str) -> str:
    """Create the Hub repository `repo` (if new) and upload `directory` to it; the token is the one
    huggingface_hub finds (HF_TOKEN, or a saved `hf auth login`). Returns the repository's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id=repo, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(repo_id=url.repo_id, folder_path=str(directory), repo_type="model", commit_message=message)
    except Exception as err:  # offline, no token, no rights: each raises its own type
        detail = " ".join(str(err).split())[:300]
        raise RunError(f"--push-to-hub {repo}: the model is saved in {directory}, but the upload failed "
                       f"({type(err).__name__}: {detail}); upload it later with `hf upload {repo} {directory}`"
                       ) from err
    return str(url)
