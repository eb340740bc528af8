"""A Hugging Face byte-level BPE tokenizer as GGUF metadata (llama.cpp's ``gpt2`` tokenizer model).

What llama.cpp needs to tokenize exactly like the HF tokenizer the model was tuned with:

* ``tokens``: one string per embedding row, in id order, spelled as in ``tokenizer.json`` (byte-level
  alphabet, ``Ġ`` for a space); rows the tokenizer never produces get ``[PAD{i}]``, type UNUSED;
* ``token_type``: CONTROL for special added tokens (matched whole, rendered only on request),
  USER_DEFINED for plain added tokens, NORMAL for the rest;
* ``merges``: ``"a b"`` strings in rank order;
* ``pre``: the name of the pre-tokenizer regex. llama.cpp hard-codes its regexes by name, so the HF
  pre-tokenizer is recognised structurally (:data:`PRE_TOKENIZERS`); an unknown one is an error rather
  than a file that silently splits text differently;
* bos/eos/unk/pad ids and whether encoding adds BOS/EOS, and the end-of-turn id (a stop token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from instructkit.errors import InstructkitError

_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _byte_level(use_regex: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "use_regex": use_regex}


def _split(regex: str) -> dict[str, Any]:
    return {"type": "Split", "pattern": {"Regex": regex}}


#: llama.cpp pre-tokenizer name -> the HF ``pre_tokenizer`` shape that splits text the same way
PRE_TOKENIZERS: dict[str, list[dict[str, Any]]] = {
    "gpt-2": [_byte_level(True)],
    "smollm": [{"type": "Digits", "individual_digits": True}, _byte_level(True)],
    "llama-bpe": [_split(_LLAMA3_REGEX), _byte_level(False)],
    "qwen2": [_split(_QWEN2_REGEX), _byte_level(False)],
}


def _matches(actual: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(actual.get(k) == v if not isinstance(v, dict) else _matches(actual.get(k) or {}, v)
               for k, v in want.items())


def detect_pre(pre_tokenizer: dict[str, Any] | None) -> str:
    """llama.cpp's name for an HF ``pre_tokenizer`` (from ``tokenizer.json``), or a clear error."""
    steps = (pre_tokenizer or {}).get("pretokenizers") if (pre_tokenizer or {}).get("type") == "Sequence" \
        else [pre_tokenizer] if pre_tokenizer else []
    for name, want in PRE_TOKENIZERS.items():
        if len(steps) == len(want) and all(_matches(a, w) for a, w in zip(steps, want)):
            return name
    raise InstructkitError(f"GGUF export: the tokenizer's pre-tokenizer {json.dumps(pre_tokenizer)[:200]} is not "
                           f"one llama.cpp knows by name; supported: {', '.join(PRE_TOKENIZERS)}")


@dataclass
class GGUFVocab:
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad/eot -> id
    add_bos: bool = False
    add_eos: bool = False


def _adds(tokenizer: Any, special_id: int | None, first: bool) -> bool:
    if special_id is None:
        return False
    ids = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return len(ids) > len(plain) and (ids[0] if first else ids[-1]) == special_id


def build_vocab(tokenizer: Any, n_vocab: int, *, end_of_turn: str | None = None) -> GGUFVocab:
    """The GGUF vocabulary of an HF fast tokenizer for a model with ``n_vocab`` embedding rows.

    ``end_of_turn``: the text closing an assistant turn in the chat template (``<|im_end|>``); when it
    is one token, it is recorded as ``eot_token_id`` so llama.cpp stops there.
    """
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise InstructkitError(f"GGUF export needs a fast (tokenizers) tokenizer; got {type(tokenizer).__name__}")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise InstructkitError("GGUF export supports byte-level BPE tokenizers (GPT-2/Llama-3/SmolLM/Qwen "
                               f"style); this one is {model.get('type')} with decoder "
                               f"{(spec.get('decoder') or {}).get('type')}")
    pre = detect_pre(spec.get("pre_tokenizer"))
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise InstructkitError(f"GGUF export: the tokenizer has {len(vocab)} tokens but the model only "
                               f"{n_vocab} embedding rows")
    by_id = {i: t for t, i in vocab.items()}
    added = {i: a for i, a in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
    special = {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "unk", "pad")}
    if end_of_turn:
        eot = tokenizer.encode(end_of_turn, add_special_tokens=False)
        if len(eot) == 1:
            special["eot"] = eot[0]
    return GGUFVocab(tokens=tokens, token_types=[int(t) for t in types], merges=merges, pre=pre,
                     special_ids={k: int(v) for k, v in special.items() if v is not None},
                     add_bos=_adds(tokenizer, special["bos"], True), add_eos=_adds(tokenizer, special["eos"], False))


def write_vocab(writer: Any, v: GGUFVocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(v.pre)
    writer.add_token_list(v.tokens)
    writer.add_token_types(v.token_types)
    writer.add_token_merges(v.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
              "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id}
    for k, i in v.special_ids.items():
        adders[k](i)
    writer.add_add_bos_token(v.add_bos)
    writer.add_add_eos_token(v.add_eos)
