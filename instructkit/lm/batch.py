"""The running batch and one decode step's mechanics: prefill joiners, decode, choose tokens, drop rows.

How the batch is held: one left-padded ``DynamicCache`` for all running sequences plus a 2D attention mask
(:class:`~instructkit.lm.cache.BatchCache`); each row's position ids count its real tokens only, so padding
changes nothing but the shape.

* :meth:`Batch.prefill` runs newly admitted sequences (one left-padded forward per shared prefix, exactly
  like HF ``generate``'s first step) and concatenates their cache rows onto the batch;
* :meth:`Batch.decode` decodes one token for every running sequence;
* finished rows leave with an index-select; leading columns that became pure padding are trimmed.

Fault isolation: a forward that raises fails only the request(s) that make it raise. A failed prefill is
retried on halves of its requests (bisection: a request that fails alone fails, the others join); a failed
decode rolls the cache back to its last good length, finds the offending rows by trial forwards on copies
of halves of the batch, fails their requests and decodes the rest. A request whose token choice or sink
raises fails alone too. Other requests never see a difference (their tokens are the same).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from instructkit.lm.cache import BatchCache, cache_kwargs, is_sliding
from instructkit.lm.requests import Pin, Request, Seq
from instructkit.lm.sampling import next_tokens


def _requests(seqs: Sequence[Seq]) -> list[Request]:
    return list({id(s.req): s.req for s in seqs}.values())


def _msg(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


class Batch:
    def __init__(self, model: Any, tokenizer: Any, *, eos: set[int], max_context: int, adapters: set[str],
                 stats: dict[str, int], max_rows: int = 0):
        self.model, self.tok, self.eos, self.max_context, self.adapters = model, tokenizer, eos, max_context, adapters
        self.device = next(model.parameters()).device
        self.stats = stats
        self.sliding = is_sliding(model)
        self.running: list[Seq] = []
        self.max_rows = max_rows
        self.cache = BatchCache(max_rows)

    # -- failure handling -----------------------------------------------------------------------------
    def fail(self, req: Request, msg: str, also: Sequence[Seq] = ()) -> None:
        """Fail every sequence of ``req`` (running, or in ``also``); its queued ones are dropped on admission."""
        req.error, req.cancelled = req.error or msg, True
        mine = [s for s in [*self.running, *also] if s.req is req]
        for s in mine:
            s.finish("error", req.error)
        self.remove(mine)

    def _isolated(self, seqs: list[Seq], run: Callable[[list[Seq]], None]) -> None:
        """``run(seqs)``; when it raises, bisect by request and fail only the requests that raise alone."""
        try:
            run(seqs)
            return
        except Exception as e:
            err = e
        reqs = _requests(seqs)
        if len(reqs) == 1:
            self.fail(reqs[0], _msg(err), seqs)
            return
        first = {id(r) for r in reqs[: len(reqs) // 2]}
        self._isolated([s for s in seqs if id(s.req) in first], run)
        self._isolated([s for s in seqs if id(s.req) not in first], run)

    def _offenders(self, seqs: list[Seq], err: Exception) -> list[tuple[Request, str]]:
        """Requests whose rows make a decode forward raise (trial forwards on copies of the rows)."""
        reqs = _requests(seqs)
        if len(reqs) == 1:
            return [(reqs[0], _msg(err))]
        first = {id(r) for r in reqs[: len(reqs) // 2]}
        out = []
        for half in ([s for s in seqs if id(s.req) in first], [s for s in seqs if id(s.req) not in first]):
            try:
                self._trial_decode(half)
            except Exception as e:
                out += self._offenders(half, e)
        return out

    # -- the model call ---------------------------------------------------------------------------------
    def _forward(self, seqs: Sequence[Seq], input_ids: Any, attention_mask: Any, position_ids: Any,
                 cache: Any) -> Any:
        kw: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=True, logits_to_keep=1, **cache_kwargs(cache))
        if self.adapters:  # peft mixed batch: each row picks its adapter ("__base__" = none)
            kw["adapter_names"] = [s.params.adapter or "__base__" for s in seqs]
        return self.model(**kw).logits[:, -1].float()  # stays on the device: sampling runs there

    # -- prefill ------------------------------------------------------------------------------------------
    def prefill(self, new: list[Seq]) -> None:
        """Join ``new`` to the batch: one prefill per distinct shared prefix (``Pin``), each isolated."""
        groups: dict[int, list[Seq]] = {}
        for s in new:
            groups.setdefault(id(s.req.pin), []).append(s)
        for group in groups.values():
            self._isolated(group, self._prefill)

    def _prefill(self, new: list[Seq]) -> None:
        import torch

        # the n completions of one request share its prompt: prefill it once, then copy its cache rows
        first: dict[int, int] = {}
        row = [first.setdefault(s.req.id, len(first)) for s in new]
        uniq = [new[row.index(k)] for k in range(len(first))]
        pin: Pin | None = uniq[0].req.pin
        P = len(pin.ids) if pin and all(s.req.prompt_ids[:len(pin.ids)] == pin.ids for s in uniq) else 0
        lens = [len(s.req.prompt_ids) - P for s in uniq]
        if P and self.sliding and len(set(lens)) > 1:
            # the padding would sit between prefix and suffix, and a sliding window counts it
            P, lens = 0, [len(s.req.prompt_ids) for s in uniq]
        T = max(lens)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(uniq), T), pad, dtype=torch.long)
        mask = torch.ones((len(uniq), P + T), dtype=torch.long)
        for b, s in enumerate(uniq):  # left padding: every prompt ends at the right edge
            p = s.req.prompt_ids[P:]
            ids[b, T - len(p):] = torch.tensor(p)
            mask[b, P: P + T - len(p)] = 0  # with a shared prefix the padding sits between it and the suffix
        # position ids as HF generate computes them: count of real tokens before, pads at 1
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, P:]
        if P:
            from instructkit.lm import prefix
            assert pin is not None
            if pin.cache is None:
                pin.cache = prefix.prefix_cache(self.model, pin.ids, self.device)
            cache = prefix.expand_cache(pin.cache, len(uniq))
        else:
            cache = BatchCache.new_dynamic(self.model)
        logits = self._forward(uniq, ids.to(self.device), mask.to(self.device), pos.to(self.device), cache)
        self.stats["prefix_tokens_reused"] += P * len(uniq)
        if pin is not None:
            pin.users -= len(new)
            if pin.users <= 0:  # the group's last rows have joined: its prefix cache is not needed again
                pin.cache = None
        if len(uniq) < len(new):
            idx = torch.tensor(row, device=self.device)
            logits, mask = logits.index_select(0, idx), mask.index_select(0, idx.cpu())
            for layer in cache.layers:
                layer.keys = layer.keys.index_select(0, idx)
                layer.values = layer.values.index_select(0, idx)
        self.cache.extend(cache, mask.to(self.device))
        self.running.extend(new)
        self.stats["prefills"] += 1
        self._advance(new, logits)

    # -- decode -------------------------------------------------------------------------------------------
    def _decode_inputs(self, seqs: Sequence[Seq], mask: Any) -> tuple[Any, Any]:
        import torch
        ids = torch.tensor([[s.ids[-1]] for s in seqs], dtype=torch.long, device=self.device)
        return ids, mask.sum(-1, keepdim=True) - 1

    def _decode_forward(self) -> Any:
        mask = self.cache.grow()
        ids, pos = self._decode_inputs(self.running, mask)
        return self._forward(self.running, ids, mask, pos, self.cache.cache)

    def _trial_decode(self, seqs: list[Seq]) -> None:
        import torch
        rows = [i for i, s in enumerate(self.running) if any(s is x for x in seqs)]
        cache, mask = self.cache.subset(rows)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
        ids, pos = self._decode_inputs(seqs, mask)
        self._forward(seqs, ids, mask, pos, cache)

    def decode(self) -> None:
        length = self.cache.mask.shape[1]
        try:
            logits = self._decode_forward()
        except Exception as e:
            self.cache.rollback(length)
            for req, msg in self._offenders(list(self.running), e):
                self.fail(req, msg)
            if not self.running:
                return
            try:  # without the offenders (none found: the step failed as a whole, retried once)
                logits = self._decode_forward()
            except Exception as e2:
                self.cache.rollback(length)
                for req in _requests(self.running):
                    self.fail(req, _msg(e2))
                return
        self.stats["max_batch"] = max(self.stats["max_batch"], len(self.running))
        self._advance(list(self.running), logits)

    # -- after the forward: choose, detokenize, stop, tell -----------------------------------------------
    def _choose(self, seqs: list[Seq], logits: Any) -> list[tuple[Seq, int, Any]]:
        args = lambda ss: ([s.params for s in ss], [s.ids for s in ss], [s.gen for s in ss])  # noqa: E731
        try:
            toks, lps = next_tokens(logits, *args(seqs))
            return list(zip(seqs, toks, lps))
        except Exception:  # one row's parameters make sampling raise: find it, fail its request only
            out = []
            for b, s in enumerate(seqs):
                try:
                    t, lp = next_tokens(logits[b: b + 1], *args([s]))
                    out.append((s, t[0], lp[0]))
                except Exception as e:
                    self.fail(s.req, _msg(e))
            return out

    def _advance(self, seqs: list[Seq], logits: Any) -> None:
        """Choose one token per sequence, check its stop conditions, tell its sink, drop finished rows."""
        done: list[Seq] = []
        for s, tok, lp in self._choose(seqs, logits):
            if s.finished:  # failed meanwhile (another row of its request)
                continue
            try:
                self._one(s, tok, lp, done)
            except Exception as e:  # e.g. the caller's sink raised: that request only
                self.fail(s.req, _msg(e))
        self.remove(done)

    def _one(self, s: Seq, tok: int, lp: Any, done: list[Seq]) -> None:
        p = s.params
        s.ids.append(tok)
        if lp is not None:
            s.logprobs.append(lp)
        self.stats["generated_tokens"] += 1
        if tok in self.eos and not p.ignore_eos:
            s.finish("stop", text_ids=s.ids[:-1])  # the final text: everything before the EOS token
            done.append(s)
            return
        text, stopped = s.stopper.feed(s.ids)
        if stopped:
            s.finish("stop", pending=text)
        elif len(s.ids) >= p.max_tokens or len(s.req.prompt_ids) + len(s.ids) >= self.max_context:
            s.finish("length", pending=text)
        else:
            s.emit(text)
            return
        done.append(s)

    def remove(self, seqs: Sequence[Seq], reason: str | None = None) -> None:
        """Take ``seqs`` out of the batch (finishing them with ``reason`` when given)."""
        gone = {id(s) for s in seqs}
        if reason is not None:
            for s in seqs:
                s.finish(reason)
        keep = [i for i, s in enumerate(self.running) if id(s) not in gone]
        if len(keep) == len(self.running):
            return
        self.running = [self.running[i] for i in keep]
        self.cache.select(keep)
