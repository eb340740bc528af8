"""Write a model as a GGUF file for llama.cpp / Ollama / LM Studio, plus a Modelfile and a model card.

``export_gguf(source, out, quant="f16")``: ``source`` is a LoRA/DoRA/QLoRA adapter folder (merged into
its base first), a full fine-tune folder, or any model reference :func:`instructkit.models.resolve_model`
accepts (the built-in alias, a ``.gguf`` file, a hub id). Written with the ``gguf`` package (llama.cpp's
own writer) in llama.cpp's layout for the ``llama`` architecture:

* tensor names from ``gguf.TensorNameMap`` (``blk.N.attn_q.weight``...); a tied ``lm_head`` is left
  out (llama.cpp reuses ``token_embd``);
* the trap: llama.cpp's rotary embedding pairs dimensions (i, i+1) while HF Llama pairs (i, i+d/2),
  so q_proj and k_proj rows are permuted per head exactly as llama.cpp's ``convert_hf_to_gguf.py``
  does (and as every GGUF reader, transformers' included, undoes);
* 1-D tensors (norms) stay F32, 2-D ones become F16 / Q8_0 (a row not a multiple of 32 stays F16);
* the byte-level BPE tokenizer (:mod:`gguf_vocab`), the chat template and its end-of-turn stop token.

The ``out`` folder follows the rule of every export (:func:`instructkit.outputs.claim_output_dir`):
only our own files are (re)written, each atomically, and nothing else in the folder is touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from instructkit.errors import InstructkitError
from instructkit.outputs import claim_output_dir, marker_data, write_error, write_errors, write_marker

#: --quant -> (GGML type of 2-D weights, file type recorded in general.file_type)
QUANTS = ("f32", "f16", "q8_0")
#: transformers model_type -> GGUF architecture we can write
ARCHITECTURES = {"llama": "llama"}
ROPE_TYPES = ("default", "linear")


def _quant_types(quant: str) -> tuple[Any, Any]:
    import gguf

    table = {"f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
             "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
             "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)}
    if quant not in table:
        raise InstructkitError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    return table[quant]


def _rope(cfg: Any) -> tuple[float, dict[str, Any]]:
    params = dict(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", None))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise InstructkitError(f"GGUF export: rope scaling {kind!r} is not supported yet (supported: "
                               f"{', '.join(ROPE_TYPES)})")
    return float(theta if theta is not None else 10000.0), params if kind == "linear" else {}


def check_supported(cfg: Any) -> str:
    """The GGUF architecture for an HF config, or an error naming what is supported."""
    arch = ARCHITECTURES.get(getattr(cfg, "model_type", None))
    if arch is None:
        raise InstructkitError(f"GGUF export: architecture {getattr(cfg, 'model_type', None)!r} "
                               f"({', '.join(getattr(cfg, 'architectures', None) or [])}) is not supported; "
                               f"supported: {', '.join(f'{k} (LlamaForCausalLM: SmolLM, Llama 2/3, TinyLlama)' for k in ARCHITECTURES)}. "
                               "Export an HF folder instead (--format hf) and convert it with llama.cpp's "
                               "convert_hf_to_gguf.py")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(cfg, flag, False):
            raise InstructkitError(f"GGUF export: Llama with {flag}=True is not supported yet")
    _rope(cfg)
    return arch


def permute_qk(w: Any, n_head: int) -> Any:
    """llama.cpp's row order for a q/k projection: per head, interleave the two rotary halves."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: Any) -> list[tuple[str, Any]]:
    """``(gguf name, float32 numpy array)`` for every weight, in llama.cpp's layout."""
    import gguf
    import torch

    cfg = model.config
    check_supported(cfg)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    n_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    out = []
    for hf_name, t in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if "rotary_emb" in hf_name:  # buffers, recomputed by llama.cpp
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise InstructkitError(f"GGUF export: no llama.cpp name for tensor {hf_name!r}")
        w = t.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = permute_qk(w, n_kv)
        out.append((name, w))
    return out


def _encode(w: Any, quant: str) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    qtype, _ = _quant_types(quant)
    if w.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        return w.astype(np.float32), gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.Q8_0 and w.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
        return gguf.quants.quantize(w, qtype), qtype
    return w.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_gguf(model: Any, tokenizer: Any, path: str | Path, *, quant: str = "f16", chat_template: str | None = None,
               end_of_turn: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Write ``model`` + ``tokenizer`` to ``path``; return what was written (types, stop ids, pre)."""
    import gguf

    from instructkit.models.gguf_vocab import build_vocab, write_vocab

    cfg = model.config
    arch = check_supported(cfg)
    _, ftype = _quant_types(quant)
    theta, scaling = _rope(cfg)
    n_head = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    vocab = build_vocab(tokenizer, cfg.vocab_size, end_of_turn=end_of_turn)
    w = gguf.GGUFWriter(str(path), arch)
    # transformers' GGUF reader treats any file whose name mentions "mistral" as Mistral: keep it out
    w.add_name((name or "instructkit-export").replace("mistral", "mistral_"))
    w.add_type("model")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(getattr(cfg, "num_key_value_heads", None) or n_head)
    w.add_rope_freq_base(theta)
    if scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(head_dim)
    if head_dim != cfg.hidden_size // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_vocab(w, vocab)
    if chat_template:
        w.add_chat_template(chat_template)
    types: dict[str, int] = {}
    for tname, arr in gguf_tensors(model):
        data, qtype = _encode(arr, quant)
        w.add_tensor(tname, data, raw_dtype=qtype)
        types[qtype.name] = types.get(qtype.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tensor_types": types, "pre_tokenizer": vocab.pre, "special_ids": vocab.special_ids,
            "n_tokens": len(vocab.tokens), "n_merges": len(vocab.merges)}


def atomic_write(path: Path, write: Any) -> None:
    """``write(tmp_path)`` then rename over ``path``; a failed write leaves ``path`` as it was."""
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except write_errors() as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def source_config(source: str | Path, base: str | None = None) -> tuple[Any, str | None]:
    """The HF config of what will be exported (an adapter's base), read without loading weights, and the
    base model reference when ``source`` is an adapter."""
    import json

    from transformers import AutoConfig

    from instructkit.models.loading import resolve_model

    p = Path(source)
    if (p / "adapter_config.json").is_file():
        base = base or json.loads((p / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise InstructkitError(f"{p / 'adapter_config.json'}: records no base model; pass --base")
        return AutoConfig.from_pretrained(resolve_model(base)), base
    return AutoConfig.from_pretrained(resolve_model(str(source))), None


def load_source(source: str | Path, base: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32: an adapter merged into its base, or the model itself."""
    from instructkit.models.loading import load_model, load_tokenizer

    p = Path(source)
    if (p / "adapter_config.json").is_file():
        from peft import PeftModel

        _, base = source_config(source, base)
        model = PeftModel.from_pretrained(load_model(str(base)), str(p)).merge_and_unload()
        tok = load_tokenizer(str(p)) if (p / "tokenizer_config.json").is_file() else load_tokenizer(str(base))
        return model.eval(), tok
    return load_model(str(source)).eval(), load_tokenizer(str(source))


def export_gguf(source: str | Path, out: str | Path, *, base: str | None = None, quant: str = "f16",
                template: str | None = None, overwrite: bool = False, command: str | None = None) -> Path:
    """Write ``out/model-{quant}.gguf``, ``out/Modelfile`` and ``out/README.md``; return the GGUF path.

    ``template``: the chat template to store (a shipped name, file or Jinja); default: the training
    run's ``model.chat_template`` (from ``recipe.yaml`` beside the model), else the tokenizer's own.
    """
    from instructkit.chat.render import Renderer, resolve_template
    from instructkit.models.card import model_card, run_recipe
    from instructkit.models.modelfile import NotTranslatable, measure, modelfile_text

    _quant_types(quant)
    out = Path(out)
    src = Path(source)
    if src.exists() and (out.resolve() == src.resolve() or src.resolve().is_relative_to(out.resolve())):
        raise InstructkitError(f"{out}: the export folder holds the model {src}; choose another --out")
    cfg, base = source_config(source, base)
    check_supported(cfg)  # before the folder is claimed or any weight is loaded
    previous = marker_data(out)
    claim_output_dir(out, "export", overwrite=overwrite)
    if previous.get("kind") == "export" and previous.get("files"):
        # keep an HF export's file list: it is what a later HF export may clean up; the GGUF files are
        # not added to it, so that export never deletes them
        write_marker(out, "export", files=previous["files"])
    model, tok = load_source(source, base)
    if template is None and src.exists():
        template = (run_recipe(src).get("model") or {}).get("chat_template")
    source_tmpl = resolve_template(template, tok) if (template or tok.chat_template) else None
    shape, why = None, "the tokenizer has no chat template"
    if source_tmpl:
        renderer = Renderer(tok, template=source_tmpl)
        try:
            shape = measure(lambda msgs, gen: renderer.apply(msgs, add_generation_prompt=gen))
        except NotTranslatable as e:
            why = f"the chat template is not translatable to an Ollama template ({e})"
    name = f"model-{quant}.gguf"
    info: dict[str, Any] = {}
    atomic_write(out / name, lambda p: info.update(write_gguf(
        model, tok, p, quant=quant, chat_template=source_tmpl, end_of_turn=shape.end_of_turn if shape else None,
        name=src.resolve().name if src.exists() else str(source))))
    stops = [shape.end_of_turn if shape else None, tok.eos_token]
    atomic_write(out / "Modelfile", lambda p: p.write_text(modelfile_text(name, shape, stops, why)))
    files = {name: f"GGUF ({quant}; tensors: {', '.join(f'{k} {v}' for k, v in info['tensor_types'].items())}; "
                   f"tokenizer pre {info['pre_tokenizer']!r}, {info['n_tokens']} tokens, {info['n_merges']} merges)",
             "Modelfile": "Ollama recipe: chat template, system prompt and stop strings"}
    usage = (f"llama.cpp: `llama-cli -m {name} -cnv`; Ollama: `ollama create mymodel -f Modelfile && "
             "ollama run mymodel`")
    cmd = command or f"instructkit export --adapter {source} --out {out} --format gguf --quant {quant}"
    card = model_card(src if (src / "adapter_config.json").is_file() or (src / "config.json").is_file() else None,
                      base=base or (str(source) if not src.is_dir() else None), command=cmd,
                      export={"format": "gguf", "files": files, "usage": usage})
    atomic_write(out / "README.md", lambda p: p.write_text(card))
    return out / name
