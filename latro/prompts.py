"""Token ids of prompts and of the teacher-forced gold answer."""

from __future__ import annotations

from jinja2 import TemplateError

from latro.rollout import Rollout
from latro.tasks import Example, Task


def encode_prompt(tokenizer, task: Task, example: Example, chat_template: bool = True) -> list[int]:
    """The task's prompt, inside the chat template when the tokenizer has one."""
    return encode_user_message(tokenizer, task.prompt(example), chat_template)


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
