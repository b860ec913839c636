"""Loading and saving models: hub id, local directory or .gguf file in; safetensors out."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from latro.checkpoint import NonFiniteError, replace_dir
from latro.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
UNBOUNDED = 10**9  # context length assumed for a model whose config gives none


def context_length(model) -> int:
    """Most positions the model takes (prompt + generation)."""
    return getattr(model.config, "max_position_embeddings", None) or UNBOUNDED


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _source(name: str) -> dict:
    """from_pretrained arguments for a hub id, a directory, or a .gguf file."""
    if not os.path.exists(name) and (name.endswith(".gguf") or not _is_repo_id(name)):
        raise UserError(f"{name}: no such model directory or file")
    if name.endswith(".gguf"):
        path = Path(name).resolve()
        return {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    return {"pretrained_model_name_or_path": name}


def _unreadable_weights(name: str) -> Path | None:
    """The first safetensors file of a local model directory that safetensors cannot open."""
    for file in sorted(Path(name).glob("*.safetensors")) if os.path.isdir(name) else []:
        try:
            with safe_open(file, "pt"):
                pass
        except (OSError, SafetensorError):
            return file
    return None


@contextmanager
def _loading(name: str):
    """A model or tokenizer that cannot be loaded, as one line naming it (or its broken weights file)."""
    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, SafetensorError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        broken = _unreadable_weights(name)
        if broken is not None:
            raise UserError(f"{broken}: cannot read the weights (truncated or corrupt?): {reason}") from err
        if os.path.exists(name):
            raise UserError(f"{name}: cannot load the model: {reason}") from err
        raise UserError(f"{name}: no such model directory or file, and loading it from the Hugging Face hub failed: "
                        f"{reason}") from err


def load_tokenizer(name: str, trust_remote_code: bool = False):
    with _loading(name):
        tokenizer = AutoTokenizer.from_pretrained(**_source(name), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Padding is always located by attention masks and lengths, never by this id.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def return_freed_memory_to_the_os() -> None:
    """Serve large tensors from mmap so that freeing them lowers the resident size.

    glibc raises its mmap threshold after each large free, after which big tensors come from the
    heap and stay resident once freed; in a training step (sampling, scoring, backward allocate
    and free hundreds of MB in turn) that costs gigabytes of peak memory on a CPU. Fixing the
    threshold at 1 MiB measured 3.1 instead of 4.6 GiB peak at the benchmark shape.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def load_model(name: str, dtype: str = "float32", trust_remote_code: bool = False):
    """A causal LM from a hub id, directory or .gguf file. Also tunes the process's allocator
    (`return_freed_memory_to_the_os`), so that it applies from Python as from the command line."""
    return_freed_memory_to_the_os()
    with _loading(name):
        model = AutoModelForCausalLM.from_pretrained(
            **_source(name), dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    if name.endswith(".gguf"):
        # GGUF weights are dequantised on load; the model is a plain one from here on.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def add_lora(model, r: int, alpha: int, dropout: float, target_modules: str):
    from peft import LoraConfig, get_peft_model

    targets = target_modules if target_modules == "all-linear" else target_modules.split(",")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def frozen_copy(model):
    """The frozen initial model pi_0 as a separate copy (used when LoRA is off)."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


@contextmanager
def reference_of(model, ref):
    """Context yielding pi_0: the separate copy, or the policy with its LoRA adapter disabled,
    which costs no memory."""
    if ref is not None:
        yield ref
        return
    with model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext():
        yield model


def nonfinite_tensors(tensors) -> int:
    """How many of the tensors hold a NaN or an infinity (one device sync)."""
    checks = [torch.isfinite(t).all() for t in tensors if t.is_floating_point() and t.numel()]
    if not checks:
        return 0
    device = checks[0].device  # (tensors may sit on several devices: offloaded moments, a CPU norm)
    return int((~torch.stack([c.to(device) for c in checks])).sum().item())


def save_model(model, tokenizer, path: str | Path, merge_lora: bool = True, extra: dict | None = None,
               state_dict: dict | None = None) -> None:
    """Hugging Face format with safetensors weights; LoRA merged into a copy, or the adapter alone.
    The directory is replaced whole (a kill leaves the previous one) and never with non-finite
    weights; `extra` maps file names to text written alongside. `state_dict`: the full weights,
    where `model` holds only a shard of them (gathered by `latro.distributed.full_state_dict`)."""
    path = Path(path)
    if hasattr(model, "merge_and_unload") and merge_lora and state_dict is None:
        model = copy.deepcopy(model).merge_and_unload()
    if nonfinite_tensors((state_dict or model.state_dict()).values()):
        raise NonFiniteError(f"refusing to write {path}: the model's weights hold NaN or infinite values")
    path.parent.mkdir(parents=True, exist_ok=True)
    with replace_dir(path) as tmp:
        gathered = {} if state_dict is None else {"state_dict": state_dict}
        model.save_pretrained(tmp, safe_serialization=True, **gathered)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)


def merged_weights(state: dict[str, torch.Tensor], model) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the plain model from `state` (`latro.distributed.full_state_dict` of `model`): without a
    LoRA adapter the state as it is; with one, each adapted weight plus its adapter's delta, under
    the base model's names (peft's `base_model.model.` and `.base_layer` dropped, lora_* left out).

    The delta is added to a copy (peft's `get_delta_weight`) rather than merged in place with
    merge_adapter / unmerge_adapter: that round trip rounds the frozen base weights, which are
    also the KL reference pi_0 (the adapter-free policy)."""
    if not hasattr(model, "peft_config"):
        yield from state.items()
        return
    for name, tensor in state.items():
        if ".lora_" in name or "lora_magnitude" in name:
            continue
        plain = name.removeprefix("base_model.model.")
        if ".base_layer." in plain:
            owner, _, kind = name.rpartition(".base_layer.")
            layer = model.get_submodule(owner)
            if kind == "weight":
                tensor = tensor + sum(layer.get_delta_weight(a).to(tensor.dtype) for a in layer.active_adapters
                                      if a in layer.lora_A)
            plain = plain.replace(".base_layer.", ".")
        yield plain, tensor
