"""Magpie: self-synthesis from an aligned model by sampling after the chat template's pre-query alone.

The pre-query (everything a template writes before the user's text: BOS, default system prompt, the
user header) is *derived from the tokenizer's own template*: render a conversation whose user message
is a sentinel string and cut there. No per-family table (distilabel hard-codes llama3/qwen2), so a
template with a default system prompt (SmolLM2) or an unusual header gets its exact pre-query, and the
end-of-turn text after the sentinel becomes the stop string.
"""

from __future__ import annotations

from typing import Any

from instructkit.errors import InstructkitError
from instructkit.lm.api import GenerateRequest
from instructkit.synth.report import RunReport
from instructkit.synth.teacher import derive_seed

SENTINEL = "\u2063MAGPIE_SENTINEL_7f3a\u2063"


def pre_query(tokenizer: Any, system: str | None = None) -> tuple[str, str]:
    """``(pre_query_text, end_of_user_turn_text)`` from ``tokenizer.chat_template``."""
    if not getattr(tokenizer, "chat_template", None):
        raise InstructkitError("magpie: the tokenizer has no chat template, so there is no pre-query to sample from")
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": SENTINEL}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    if text.count(SENTINEL) != 1:
        raise InstructkitError("magpie: the chat template does not render the user message verbatim; cannot cut "
                               "the pre-query from it")
    pre, post = text.split(SENTINEL)
    # the backend tokenizes the raw prompt with special tokens; drop a BOS the tokenizer adds itself
    bos = getattr(tokenizer, "bos_token", None)
    if bos and pre.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        pre = pre[len(bos):]
    return pre, post


def _end_marker(post: str) -> str:
    """The first non-blank piece of the text after the user message (e.g. ``<|im_end|>``, ``[/INST]``)."""
    s = post.strip()
    return s.split("\n")[0].strip() if s else ""


def magpie(cfg: Any, teacher: Any, tokenizer: Any, tcfg: Any) -> tuple[list[dict], RunReport]:
    rep = RunReport("magpie", cfg.model_dump())
    pre, post = pre_query(tokenizer, cfg.system)
    stop = [m for m in [_end_marker(post)] if m]
    rep.extra["pre_query"] = pre
    rep.extra["stop"] = stop
    temp = tcfg.temperature if tcfg.temperature > 0 else 1.0  # greedy would give one instruction n times
    reqs = [GenerateRequest(prompt=pre, temperature=temp, top_p=tcfg.top_p, max_new_tokens=tcfg.max_new_tokens,
                            stop=stop, seed=derive_seed(cfg.seed, "instruction", i)) for i in range(cfg.n)]
    res = teacher.generate(reqs, desc="magpie instructions")
    seen: set[str] = set()
    items = []
    for i, r in enumerate(res):
        if r is None:
            rep.drop("teacher_failed")
            continue
        ins = r.texts[0].strip()
        if len(ins.split()) < cfg.min_words:
            rep.drop("too_short", ins)
            continue
        key = " ".join(ins.lower().split())
        if key in seen:
            rep.drop("exact_duplicate", ins)
            continue
        seen.add(key)
        items.append({"id": f"magpie_{i}", "instruction": ins, "input": "",
                      "provenance": {"method": "magpie", "teacher": teacher.name, "seed": reqs[i].seed,
                                     "temperature": temp}})
    if cfg.respond and items:
        sys = [{"role": "system", "content": cfg.system}] if cfg.system else []
        ans = teacher.generate([GenerateRequest(messages=sys + [{"role": "user", "content": it["instruction"]}],
                                                temperature=tcfg.temperature, top_p=tcfg.top_p,
                                                max_new_tokens=tcfg.max_new_tokens,
                                                seed=derive_seed(cfg.seed, "response", it["id"]))
                                for it in items], desc="magpie responses")
        kept = []
        for it, a in zip(items, ans):
            if a is None or not a.texts[0].strip():
                rep.drop("teacher_failed" if a is None else "empty_response", it["instruction"])
                continue
            it["output"] = a.texts[0].strip()
            kept.append(it)
        items = kept
    for it in items:
        sys_msg = [{"role": "system", "content": cfg.system}] if cfg.system else []
        it["messages"] = sys_msg + [{"role": "user", "content": it["instruction"]}] + (
            [{"role": "assistant", "content": it["output"]}] if "output" in it else [])
        rep.keep(it["instruction"])
    return items, rep
