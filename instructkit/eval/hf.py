"""A local Hugging Face causal LM behind the :class:`~instructkit.eval.api.LM` interface.

loglikelihood: tokenization follows lm-evaluation-harness (``_encode_pair``: trailing context spaces
move to the continuation, context + continuation encoded whole and split at the context's token
length). Requests sharing a context are *packed*: one row holds the context once followed by every
choice's tokens, with a custom 4D mask so each choice sees the context and its own earlier tokens only,
and position ids that restart at the context length for each choice. So the prompt is run once, not
once per choice, and rows of different groups are batched by length (right padded). Because the mask
is explicit and 4D, the SDPA packed-row trap (position ids restarting with no mask) does not apply.

generate: HF ``generate`` with left padding, stop strings (trimmed from the text), ``n`` samples, seeds.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from typing import Any, Sequence

from instructkit.eval.api import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult


def _progress(total: int, desc: str, disable: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=disable or total < 2, leave=False)


class HFModel:
    """``HFModel(ref_or_model, tokenizer=None, dtype=..., batch_size=..., max_length=..., ...)``."""

    def __init__(self, model_or_ref: Any, tokenizer: Any = None, *, dtype: str = "float32",
                 batch_size: int = 8, max_length: int | None = None, chat_template: str | None = None,
                 apply_chat_template: bool = False, progress: bool = True, device: str | None = None):
        from instructkit.models import load_model, load_tokenizer

        if isinstance(model_or_ref, str):
            self.name = model_or_ref
            self.model = load_model(model_or_ref, dtype=dtype)
            import torch
            dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if dev != "cpu":
                self.model.to(dev)
            self.tokenizer = tokenizer or load_tokenizer(model_or_ref)
        else:
            self.model = model_or_ref
            self.tokenizer = tokenizer
            self.name = str(getattr(getattr(model_or_ref, "config", None), "_name_or_path", "") or "model")
            if tokenizer is None:
                raise ValueError("HFModel(model_object) needs tokenizer=")
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        self.batch_size = batch_size
        cfg_max = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_length = max_length or min(cfg_max, 4096)
        self.chat_template = chat_template
        self.apply_chat_template = apply_chat_template
        self.progress = progress
        self._renderer: Any = None
        self._fingerprint: str | None = None
        #: counters for the throughput report (seconds spent, items and tokens processed)
        self.stats: dict[str, float] = defaultdict(float)

    # -- identity ---------------------------------------------------------------------------------
    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def fingerprint(self) -> str:
        """Identifies the weights + tokenizer + settings (cache keys for resume)."""
        if self._fingerprint is None:
            import torch
            h = hashlib.sha256()
            h.update(f"{self.name}|{self.dtype}|{self.max_length}|{self.chat_template}|"
                     f"{self.apply_chat_template}|{len(self.tokenizer)}".encode())
            with torch.no_grad():  # a cheap content checksum: the same name with other weights differs
                for p in list(self.model.parameters())[:: max(1, len(list(self.model.parameters())) // 16)]:
                    h.update(f"{float(p.float().sum()):.6e}|{tuple(p.shape)}".encode())
            self._fingerprint = h.hexdigest()[:20]
        return self._fingerprint

    @property
    def renderer(self) -> Any:
        if self._renderer is None:
            from instructkit.chat.render import Renderer
            self._renderer = Renderer(self.tokenizer, self.chat_template)
        return self._renderer

    # -- tokenization (lm-eval compatible) ---------------------------------------------------------
    @property
    def prefix_token_id(self) -> int:
        t = self.tokenizer
        return t.bos_token_id if t.bos_token_id is not None else t.eos_token_id

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            return ([self.prefix_token_id], cont) if cont and cont[0] != self.prefix_token_id else (cont[:1], cont[1:])
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tokenizer(context + continuation)["input_ids"]
        ctx = self.tokenizer(context)["input_ids"]
        return list(ctx), list(whole[len(ctx):])

    # -- loglikelihood ------------------------------------------------------------------------------
    def _rows(self, encoded: list[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
        """Pack requests into rows ``(context, [(request index, continuation), ...])`` within max_length."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (ctx, _cont) in enumerate(encoded):
            groups[tuple(ctx)].append(i)
        rows = []
        for ctx_t, idxs in groups.items():
            ctx = list(ctx_t)
            cur: list[tuple[int, list[int]]] = []
            used = len(ctx)
            for i in idxs:
                cont = encoded[i][1]
                if len(ctx) + len(cont) - 1 > self.max_length:
                    # lm-eval: keep the last max_length+1 tokens (left-truncate the context); own row
                    whole = (ctx + cont)[-(self.max_length + 1):]
                    rows.append((whole[: len(whole) - len(cont)], [(i, cont)]))
                    continue
                if cur and used + len(cont) - 1 > self.max_length:
                    rows.append((ctx, cur))
                    cur, used = [], len(ctx)
                cur.append((i, cont))
                used += len(cont) - 1
            if cur:
                rows.append((ctx, cur))
        return rows

    def _pack(self, rows: list[tuple[list[int], list[tuple[int, list[int]]]]]) -> tuple[Any, Any, Any, list]:
        """Token ids, additive 4D mask, position ids for a batch of packed rows, and where to score."""
        import torch

        seqs, spans = [], []
        for ctx, conts in rows:
            ids, pos, seg = list(ctx), list(range(len(ctx))), [0] * len(ctx)
            where = []
            for k, (i, cont) in enumerate(conts, start=1):
                start = len(ids)
                body = cont[:-1]  # the last continuation token is predicted, never fed
                ids += body
                pos += range(len(ctx), len(ctx) + len(body))
                seg += [k] * len(body)
                # logits predicting cont[j] sit at the context's last token (j=0), then at body[j-1]
                where.append((i, [len(ctx) - 1] + list(range(start, start + len(body))), cont))
            seqs.append((ids, pos, seg))
            spans.append(where)
        T = max(len(s[0]) for s in seqs)
        B = len(seqs)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((B, T), pad, dtype=torch.long)
        position_ids = torch.zeros((B, T), dtype=torch.long)
        allowed = torch.zeros((B, T, T), dtype=torch.bool)
        for b, (ids, pos, seg) in enumerate(seqs):
            n = len(ids)
            input_ids[b, :n] = torch.tensor(ids)
            position_ids[b, :n] = torch.tensor(pos)
            s = torch.tensor(seg)
            causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
            # a token sees the context (segment 0) and earlier tokens of its own segment
            same = (s[:, None] == s[None, :]) | (s[None, :] == 0)
            allowed[b, :n, :n] = causal & same
            # padding queries see themselves only (an all-masked row would give NaN in SDPA)
            idx = torch.arange(n, T)
            allowed[b, idx, idx] = True
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros((B, 1, T, T), dtype=dtype)
        mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
        return input_ids, mask, position_ids, spans

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        import torch

        t0 = time.perf_counter()
        encoded = [self.encode_pair(r.context, r.continuation) for r in requests]
        rows = self._rows(encoded)
        rows.sort(key=lambda r: -(len(r[0]) + sum(len(c) - 1 for _, c in r[1])))
        out: list[LoglikelihoodResult | None] = [None] * len(requests)
        bar = _progress(len(requests), "loglikelihood", not self.progress)
        dev = self.device
        for b0 in range(0, len(rows), self.batch_size):
            batch = rows[b0: b0 + self.batch_size]
            input_ids, mask, position_ids, spans = self._pack(batch)
            first = min(min(p[0] for _, p, _ in where) for where in spans)
            keep = input_ids.shape[1] - first  # logits only from the first scored position on
            kw = dict(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=position_ids.to(dev),
                      use_cache=False)
            with torch.no_grad():
                try:
                    logits = self.model(**kw, logits_to_keep=keep).logits
                except TypeError:  # an architecture without logits_to_keep: slice after the full head
                    logits = self.model(**kw).logits[:, first:]
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for b, where in enumerate(spans):
                for i, positions, cont in where:
                    rows_lp = logp[b, torch.tensor(positions) - first]
                    tgt = torch.tensor(cont)
                    lp = rows_lp.gather(1, tgt[:, None]).squeeze(1)
                    greedy = bool((rows_lp.argmax(-1) == tgt).all())
                    out[i] = LoglikelihoodResult(float(lp.sum()), greedy, len(cont), len(requests[i].continuation))
                    bar.update(1)
            self.stats["ll_tokens"] += sum(len(c) + sum(len(x) - 1 for _, x in cs) for c, cs in batch)
        bar.close()
        self.stats["ll_requests"] += len(requests)
        self.stats["ll_seconds"] += time.perf_counter() - t0
        return out  # type: ignore[return-value]

    # -- generation ---------------------------------------------------------------------------------
    def prompt_of(self, r: GenerateRequest) -> tuple[str, bool]:
        """The text to continue and whether it came from the chat template."""
        if r.messages is not None:
            return self.renderer.prompt_text(r.messages), True
        if r.prompt is None:
            raise ValueError("GenerateRequest needs prompt or messages")
        if self.apply_chat_template:
            return self.renderer.prompt_text([{"role": "user", "content": r.prompt}]), True
        return r.prompt, False

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        t0 = time.perf_counter()
        prompts = [self.prompt_of(r) for r in requests]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.max_new_tokens, r.temperature, r.top_p, r.n, r.seed, tuple(r.stop), prompts[i][1])].append(i)
        out: list[GenerateResult | None] = [None] * len(requests)
        bar = _progress(len(requests), "generate", not self.progress)
        for key, idxs in groups.items():
            idxs.sort(key=lambda i: -len(prompts[i][0]))
            for b0 in range(0, len(idxs), self.batch_size):
                chunk = idxs[b0: b0 + self.batch_size]
                res = self._generate_batch([prompts[i][0] for i in chunk], *key)
                for i, r in zip(chunk, res):
                    out[i] = r
                bar.update(len(chunk))
        bar.close()
        self.stats["gen_requests"] += len(requests)
        self.stats["gen_seconds"] += time.perf_counter() - t0
        return out  # type: ignore[return-value]

    def _generate_batch(self, texts: list[str], max_new_tokens: int, temperature: float, top_p: float, n: int,
                        seed: int | None, stop: tuple[str, ...], chat: bool) -> list[GenerateResult]:
        import torch

        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"  # decoder-only generation continues from the right edge
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        finally:
            tok.padding_side = old_side
        sample = temperature > 0
        kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, do_sample=sample)
        if sample:
            kw.update(temperature=temperature, top_p=top_p, num_return_sequences=n, top_k=0)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if stop:
            # not transformers' stop_strings: its StopStringCriteria precomputes tables over the whole
            # vocabulary on every generate call (4x slower than the generation itself for a 49k vocab)
            from transformers import StoppingCriteriaList
            kw["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(tok, stop, enc["input_ids"].shape[1])])
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            gen = self.model.generate(input_ids=enc["input_ids"].to(self.device),
                                      attention_mask=enc["attention_mask"].to(self.device), **kw)
        new = gen[:, enc["input_ids"].shape[1]:].cpu()
        per = n if sample else 1
        results = []
        for b in range(len(texts)):
            outs, counts = [], []
            for j in range(per):
                ids = new[b * per + j].tolist()
                if tok.eos_token_id in ids:  # pad == eos: count up to and including the first eos
                    ids = ids[: ids.index(tok.eos_token_id) + 1]
                counts.append(len(ids))
                outs.append(cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop))
            if not sample and n > 1:  # greedy: every sample is the same path
                outs, counts = outs * n, counts * n
            self.stats["gen_tokens"] += sum(counts)
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


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest stop string (exclusive)."""
    cut = len(text)
    for s in stop:
        k = text.find(s)
        if k != -1:
            cut = min(cut, k)
    return text[:cut]
