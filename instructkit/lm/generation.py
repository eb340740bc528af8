"""Generation for :class:`~instructkit.lm.hf.HFModel`: the serve stage's continuous-batching engine, or HF
``generate`` in fixed padded batches (the reference path, ``HFModel(generation="hf")``).

Why the engine: a fixed batch runs until its longest answer ends (CoT answers range from 20 to 256 tokens),
so most rows decode padding; in the engine a finished sequence leaves the batch at once and a waiting prompt
takes its slot. Self-consistency's ``n`` samples of one prompt are one engine request: the prompt is
prefilled once and its KV cache rows are shared by the ``n`` samples. Greedy ``n > 1`` is computed once and
repeated (every greedy path is the same). End tokens: every id of the model's generation_config plus the
tokenizer's eos (``HFModel.eos_token_ids``); stop strings are checked per sequence as text arrives.

Result semantics are the same on both paths: texts with the stop string and everything after it removed,
``n_tokens`` counting generated tokens up to and including the end token.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from instructkit.lm.api import GenerateResult


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest stop string (exclusive)."""
    cut = len(text)
    for s in stop:
        k = text.find(s)
        if k != -1:
            cut = min(cut, k)
    return text[:cut]


def encode_prompt(lm: Any, text: str, chat: bool, max_new_tokens: int) -> list[int]:
    """Prompt token ids; a prompt too long for the window keeps its last tokens (lm-eval does the same),
    counted in ``lm.stats["gen_prompts_truncated"]``."""
    ids = list(lm.tokenizer(text, add_special_tokens=not chat)["input_ids"])
    room = max(1, lm.max_length - max_new_tokens)
    if len(ids) > room:
        lm.stats["gen_prompts_truncated"] += 1
        ids = ids[-room:]
    return ids


def engine_generate_iter(lm: Any, prompts: Sequence[tuple[str, bool]],
                         requests: Sequence[Any]) -> Iterator[tuple[int, GenerateResult]]:
    """``(index, result)`` as each request finishes; all are queued in one ``Engine.as_completed`` call, so rows
    of different tasks share the batch and it stays full until the queue drains (no per-chunk tail)."""
    from instructkit.lm.sampling import SamplingParams

    eng = lm.engine
    # a LoRA model loaded unmerged (PeftModel): the engine runs rows without an adapter name on the base
    # weights, so name the active adapter explicitly
    adapter = getattr(lm.model, "active_adapter", None) if eng.adapters else None
    items, reps = [], []
    for (text, chat), r in zip(prompts, requests):
        sample = r.temperature > 0
        p = SamplingParams(max_tokens=r.max_new_tokens, temperature=r.temperature if sample else 0.0,
                           top_p=r.top_p if sample else 1.0, n=r.n if sample else 1, stop=list(r.stop),
                           seed=r.seed, adapter=adapter)
        items.append((encode_prompt(lm, text, chat, r.max_new_tokens), p))
        reps.append(1 if sample else r.n)
    for i, o in eng.as_completed(items):
        bad = [c for c in o.outputs if c.finish_reason == "error"]
        if bad or not o.outputs:
            raise RuntimeError(f"generation failed: {bad[0].finish_reason if bad else 'no output'}")
        texts = [c.text for c in o.outputs] * reps[i]
        counts = [len(c.token_ids) for c in o.outputs] * reps[i]
        lm.stats["gen_tokens"] += sum(counts)
        yield i, GenerateResult(texts, counts)


def make_engine(lm: Any) -> Any:
    from instructkit.lm.engine import Engine
    return Engine(lm.model, lm.tokenizer, max_batch_size=lm.gen_batch_size, max_queue=1 << 30,
                  max_context=lm.max_length, eos_token_ids=lm.eos_token_ids(),
                  prefix_min_tokens=lm.prefix_min_tokens)


# -- the reference path: HF generate, fixed left-padded batches ---------------------------------------------
def hf_generate_batch(lm: Any, texts: list[str], max_new_tokens: int, temperature: float, top_p: float, n: int,
                      seed: int | None, stop: tuple[str, ...], chat: bool) -> list[GenerateResult]:
    import torch

    tok = lm.tokenizer
    old_side = tok.padding_side
    tok.padding_side = "left"  # decoder-only generation continues from the right edge
    try:
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    finally:
        tok.padding_side = old_side
    sample = temperature > 0
    eos = lm.eos_token_ids()
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                              eos_token_id=eos, do_sample=sample)
    if sample:
        kw.update(temperature=temperature, top_p=top_p, num_return_sequences=n, top_k=0)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    if stop:
        # not transformers' stop_strings: its StopStringCriteria precomputes tables over the whole
        # vocabulary on every generate call (4x slower than the generation itself for a 49k vocab)
        from transformers import StoppingCriteriaList
        kw["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(tok, stop, enc["input_ids"].shape[1])])
    # a seeded request must not reseed the caller's global RNG: fork it (restored on exit)
    cuda = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, enabled=seed is not None), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        gen = lm.model.generate(input_ids=enc["input_ids"].to(lm.device),
                                attention_mask=enc["attention_mask"].to(lm.device), **kw)
    new = gen[:, enc["input_ids"].shape[1]:].cpu()
    per = n if sample else 1
    results = []
    for b in range(len(texts)):
        outs, counts = [], []
        for j in range(per):
            ids = new[b * per + j].tolist()
            ends = [k for k, t in enumerate(ids) if t in eos]
            if ends:  # pad == eos: count up to and including the first end token
                ids = ids[: ends[0] + 1]
            counts.append(len(ids))
            outs.append(cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop))
        if not sample and n > 1:  # greedy: every sample is the same path
            outs, counts = outs * n, counts * n
        lm.stats["gen_tokens"] += sum(counts)
        results.append(GenerateResult(outs, counts))
    return results


class _StopOnStrings:
    """Per-row stop: the decoded generated text contains a stop string (checked on the recent tail)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], prompt_len: int):
        self.tok, self.stop, self.start = tokenizer, list(stop), prompt_len
        self.tail = max(len(s) for s in stop) + 8  # tokens: each is at least one character

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch
        gen = input_ids[:, self.start:]
        tails = self.tok.batch_decode(gen[:, -self.tail:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in tails], dtype=torch.bool,
                            device=input_ids.device)
