"""Token ids of prompts and of the teacher-forced gold answer.

A prompt is the task's own (the paper's) unless the run gives a system prompt, a Jinja template of
the user message or few-shot examples (`PromptFormat`); `encode_prompt` applies it the same way in
training, `latro eval` and `latro dgdiff`.
"""

from __future__ import annotations

import dataclasses
import re

from jinja2 import TemplateError

from latro.errors import SettingError, UserError
from latro.rollout import Rollout
from latro.tasks import Example, Task

# What a --prompt-template may use: the question and its options, never its gold answer or rationale.
TEMPLATE_FIELDS = ("question", "choices", "options", "id", "prompt")
_GOLD_FIELDS = ("answer", "rationale", "solution")


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How a task's prompt becomes the conversation the model sees. The default (nothing set) is the
    paper's: the task's prompt as the one user message."""

    system: str | None = None
    template: object | None = None  # a jinja2 Template of the user message
    template_path: str | None = None
    shots: tuple[Example, ...] = ()
    shot_places: tuple[str, ...] = ()  # "file:line" of each shot, for error messages
    shots_as: str = "chat"  # "chat": user/assistant turns; "text": worked examples inside the user message

    def user_text(self, task: Task, ex: Example) -> str:
        """The user message of `ex`: the task's prompt, or the template rendered over its fields."""
        if self.template is None:
            return task.prompt(ex)
        fields = {"question": ex.question, "id": ex.id, "prompt": task.prompt(ex),
                  "choices": [{"label": label, "text": text} for label, text in ex.choices],
                  "options": " ".join(f"({label}) {text}" for label, text in ex.choices)}
        try:
            return self.template.render(**fields)
        except TemplateError as err:  # StrictUndefined: e.g. {{ question.text }}
            raise UserError(f"{self.template_path}: {type(err).__name__}: {err}") from None

    def reply(self, task: Task, shot: Example) -> str:
        """A shot's worked answer: its rationale (if the file gives one), then the task's answer text."""
        return f"{shot.rationale.strip()}\n{task.answer_text(shot)}" if shot.rationale else task.answer_text(shot)

    def messages(self, task: Task, ex: Example) -> list[dict]:
        """The conversation for `ex`: system prompt, shots, then its user message."""
        user = self.user_text(task, ex)
        turns = [{"role": "system", "content": self.system}] if self.system else []
        if self.shots_as == "text" and self.shots:
            worked = "\n\n".join(f"{self.user_text(task, s)}\n{self.reply(task, s)}" for s in self.shots)
            user = f"{worked}\n\n{user}"
        else:
            for shot in self.shots:
                turns += [{"role": "user", "content": self.user_text(task, shot)},
                          {"role": "assistant", "content": self.reply(task, shot)}]
        return turns + [{"role": "user", "content": user}]

    def text(self, tokenizer, task: Task, ex: Example, chat_template: bool = True) -> str:
        """The prompt as text: through the chat template when the tokenizer has one, else the turns'
        contents one after the other, separated by a blank line."""
        turns = self.messages(task, ex)
        if chat_template and tokenizer.chat_template:
            try:
                return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
            except TemplateError as err:  # e.g. Gemma's template refuses a system message
                raise UserError(f"the tokenizer's chat template rejects this prompt ({err}); drop --system-prompt "
                                "or use --few-shot-format text, or --no-chat-template") from None
        return "\n\n".join(turn["content"] for turn in turns)

    def overlap(self, examples: list[Example]) -> dict[int, str]:
        """Which of `examples` (by position) ask a shot's question (compared without case and spacing):
        the shot's place in its file."""
        shots = {_normalized(s.question): place for s, place in zip(self.shots, self.shot_places)}
        return {i: shots[q] for i, ex in enumerate(examples) if (q := _normalized(ex.question)) in shots}

    def refuse_overlap(self, examples: list[Example], split: str) -> None:
        """UserError if a shot's question is one of `examples` (the split evaluated): its answer would
        be in the prompt."""
        found = self.overlap(examples)
        if found:
            i, place = next(iter(found.items()))
            raise UserError(f"{place}: this few-shot example is question {examples[i].id!r} of the {split} split "
                            f"({len(found)} such): shots must not come from the split evaluated")


def _normalized(question: str) -> str:
    return re.sub(r"\s+", " ", question).strip().lower()


def prompt_format(cfg, task: Task) -> PromptFormat:
    """The PromptFormat that the settings `cfg` ask for (--system-prompt, --prompt-template,
    --few-shot, --num-shots, --few-shot-format); every problem is one UserError naming the file."""
    template = None
    if cfg.prompt_template:
        template = _load_template(cfg.prompt_template)
    shots, places = _load_shots(cfg, task) if cfg.few_shot else ((), ())
    return PromptFormat(system=cfg.system_prompt, template=template, template_path=cfg.prompt_template,
                        shots=shots, shot_places=places, shots_as=cfg.few_shot_format)


def _load_template(path: str):
    """The Jinja template in `path`, sandboxed (a template cannot reach Python objects) and strict (a
    misspelt field is an error, not an empty string); fields checked against TEMPLATE_FIELDS."""
    from jinja2 import StrictUndefined, TemplateSyntaxError, meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        source = open(path, encoding="utf-8").read()
    except OSError as err:
        raise UserError(f"{path}: cannot read the prompt template ({err.strerror or err})") from None
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        used = meta.find_undeclared_variables(env.parse(source))
    except TemplateSyntaxError as err:
        raise UserError(f"{path}:{err.lineno}: template syntax error: {err.message}") from None
    for name in sorted(used):
        if name in _GOLD_FIELDS:
            raise UserError(f"{path}: field '{name}' holds the gold answer, which a prompt must not show")
        if name not in TEMPLATE_FIELDS:
            raise UserError(f"{path}: unknown field '{name}'; a template may use {', '.join(TEMPLATE_FIELDS)}")
    return env.from_string(source)


def _load_shots(cfg, task: Task) -> tuple[tuple[Example, ...], tuple[str, ...]]:
    """The first --num-shots examples of the --few-shot JSONL file (all when 0), read by the task."""
    from latro.tasks.base import read_jsonl

    records = read_jsonl(cfg.few_shot)
    if cfg.num_shots > len(records):
        raise SettingError("num_shots", f"got {cfg.num_shots}, but {cfg.few_shot} holds {len(records)} examples")
    chosen = records[: cfg.num_shots or None]
    places = tuple(f"{cfg.few_shot}:{n}" for n, _ in chosen)
    return tuple(task.record_example(rec, place, f"shot-{n}") for (n, rec), place in zip(chosen, places)), places


def encode_prompt(tokenizer, task: Task, example: Example, chat_template: bool = True) -> list[int]:
    """The task's prompt, inside the chat template when the tokenizer has one, in the run's
    PromptFormat (`task.prompt_format`; the paper's prompt when it has none)."""
    fmt = getattr(task, "prompt_format", None)
    if fmt is None or fmt == PromptFormat():
        return encode_user_message(tokenizer, task.prompt(example), chat_template)
    text = fmt.text(tokenizer, task, example, chat_template)
    if chat_template and tokenizer.chat_template:
        return tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer(text).input_ids  # plain prompt: the tokenizer's own BOS, if any


def first_prompt(tokenizer, task: Task, examples: list[Example], chat_template: bool = True) -> str | None:
    """The prompt of the first example exactly as the model sees it (decoded ids), to print and save."""
    if not examples:
        return None
    return tokenizer.decode(encode_prompt(tokenizer, task, examples[0], chat_template))


def encode_user_message(tokenizer, text: str, chat_template: bool = True) -> list[int]:
    """A user message as prompt ids, inside the chat template when the tokenizer has one."""
    if chat_template and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer(text).input_ids  # plain prompt: the tokenizer's own BOS, if any


_PROBE = "LATRO-END-OF-TURN-PROBE"


def end_of_turn_id(tokenizer, chat_template: bool = True) -> int:
    """The token that closes an assistant turn in the chat template (Phi-3.5 `<|end|>`, Llama 3
    `<|eot_id|>`, ChatML `<|im_end|>`), which the paper's answer ends with; EOS when prompts are
    not templated or the template closes the turn with no special token."""
    if chat_template and tokenizer.chat_template:
        try:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": "1 + 1?"}, {"role": "assistant", "content": _PROBE}], tokenize=False)
        except (TemplateError, ValueError):  # a template may reject this conversation
            text = ""
        if _PROBE in text:
            special = set(tokenizer.all_special_ids) | {
                i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
            rest = tokenizer(text.split(_PROBE, 1)[1], add_special_tokens=False).input_ids
            closing = next((i for i in rest if i in special), None)
            if closing is not None:
                return closing
    return tokenizer.eos_token_id


def stop_token_ids(tokenizer, model=None) -> set[int]:
    """EOS and end-of-turn ids: the tokenizer's, the chat template's, and any the generation
    config lists."""
    ids = {tokenizer.eos_token_id, end_of_turn_id(tokenizer)} - {None}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is not None:
        ids |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
    return ids


def answer_ids(tokenizer, task: Task, example: Example, rollout: Rollout, end_id: int | None = None) -> list[int]:
    """`The answer is {gold}.` then the end-of-turn token (the paper; `end_id`, by default
    `end_of_turn_id`), placed where the stop pattern began: the rollout's own gap text, else one
    space after the rationale."""
    if rollout.stop is not None and rollout.gap:
        prefix = rollout.gap
    else:
        prefix = "" if not rollout.rationale or rollout.rationale[-1].isspace() else " "
    ids = tokenizer(prefix + task.answer_text(example), add_special_tokens=False).input_ids
    return ids + [end_id if end_id is not None else end_of_turn_id(tokenizer)]


def sft_target_ids(tokenizer, task: Task, example: Example, prompt_ids: list[int],
                   end_id: int | None = None) -> tuple[list[int], list[int]]:
    """(rationale, answer) token ids of the gold solution, as a model would write it after the
    prompt: a line break first unless the prompt already ends in whitespace (chat templates do);
    the answer ends with the end-of-turn token, as in `answer_ids`."""
    if not example.rationale:
        raise ValueError(f"example {example.id} has no gold rationale")
    ends_in_space = tokenizer.decode(prompt_ids[-1:])[-1:].isspace()
    rationale = tokenizer(("" if ends_in_space else "\n") + example.rationale.strip(),
                          add_special_tokens=False).input_ids
    answer = tokenizer("\n" + task.answer_text(example), add_special_tokens=False).input_ids
    return rationale, answer + [end_id if end_id is not None else end_of_turn_id(tokenizer)]
