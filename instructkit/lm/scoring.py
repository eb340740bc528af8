"""Log-likelihood of packed rows with the LM head at scored positions only.

The model's own forward computes full-vocabulary logits at every position it keeps: for a batch of
packed rows that is batch x positions x vocabulary (32 rows x 512 x 49152 in fp32 = 3.2 GB, then as much
again for its log-softmax), when a rank-classification batch scores a few hundred tokens. Here the decoder
runs once, the hidden states of the scored positions are gathered (row, position), and the head + its
log-softmax run on those only, :data:`CHUNK_BYTES` of fp32 logits at a time: memory no longer grows with
the batch or the row length. Each position's logits are the same numbers the model's forward computes
(the head is row-wise), checked once per model against the model's own logits (:func:`direct_head`);
an architecture whose head path differs falls back to the model's forward.
"""

from __future__ import annotations

from typing import Any, Callable

from instructkit.lm.api import LoglikelihoodResult

#: bytes of fp32 logits per chunk of scored positions (the head's output and its log-softmax each):
#: 682 positions of a 49152-token vocabulary, whatever the batch size and row length
CHUNK_BYTES = 2**27

#: tolerated max |logit difference| / (1 + max |logit|) between the head path and the model's forward, per
#: parameter dtype (a wrong or missing post-processing, e.g. Gemma-2's soft-capping, is off by far more)
TOLERANCE = {"float32": 1e-4, "float64": 1e-8, "bfloat16": 2e-2, "float16": 5e-3}


def scored_positions(spans: list) -> tuple[list[int], list[int], list[int], list[int], list[tuple[int, int]]]:
    """Flattened (row, position, target token, continuation number) of every scored token of a batch
    (``packed_batch``'s spans), and ``(request index, n tokens)`` per continuation."""
    rows: list[int] = []
    pos: list[int] = []
    tgt: list[int] = []
    seg: list[int] = []
    done: list[tuple[int, int]] = []
    for b, where in enumerate(spans):
        for i, positions, cont in where:
            rows += [b] * len(positions)
            pos += positions
            tgt += cont
            seg += [len(done)] * len(cont)
            done.append((i, len(cont)))
    return rows, pos, tgt, seg, done


def continuation_scores(logits_of: Callable[[int, int], Any], vocab: int, targets: Any, segments: Any,
                        n_conts: int) -> tuple[Any, Any]:
    """Summed log-prob and all-greedy flag per continuation. ``logits_of(start, end)``: the logits of scored
    positions ``start:end``; taken in chunks of :data:`CHUNK_BYTES` of fp32 logits."""
    import torch

    n = int(targets.shape[0])
    chunk = max(16, CHUNK_BYTES // (4 * max(vocab, 1)))
    lps, misses = [], []
    for s in range(0, n, chunk):
        logp = torch.log_softmax(logits_of(s, min(n, s + chunk)).float(), dim=-1)
        t = targets[s: s + chunk]
        lps.append(logp.gather(1, t[:, None])[:, 0])
        misses.append((logp.argmax(-1) != t).float())
        del logp
    sums = torch.zeros(n_conts, device=targets.device).index_add_(0, segments, torch.cat(lps))
    missed = torch.zeros(n_conts, device=targets.device).index_add_(0, segments, torch.cat(misses))
    return sums, missed == 0


def _head_path(model: Any) -> Callable[[Any], Any] | None:
    """``hidden -> logits`` by the decoder's output and the head (with the model's logit post-processing),
    or None when the model exposes no decoder/head or that path does not reproduce its logits."""
    import torch

    from instructkit.models.head import logit_postprocess

    get_dec, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not callable(get_dec) or head is None:
        return None
    post = logit_postprocess(model)
    dev = next(model.parameters()).device
    ids = (torch.arange(9, device=dev)[None] + 3) % head.weight.shape[0]
    with torch.no_grad():
        try:
            own = model(input_ids=ids, use_cache=False).logits.float()
            mine = post(head(get_dec()(input_ids=ids, use_cache=False).last_hidden_state)).float()
        except Exception:  # noqa: BLE001 - any failure of the by-hand path: use the model's forward
            return None
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    err = float((own - mine).abs().max()) / (1.0 + float(own.abs().max()))
    return (lambda h: post(head(h))) if mine.shape == own.shape and err <= TOLERANCE.get(dtype, 2e-2) else None


def direct_head(lm: Any) -> Callable[[Any], Any] | None:
    """The checked head path of an HFModel's model (checked once per model object, remembered on ``lm``)."""
    key = id(lm.model)
    if getattr(lm, "_head_path", (None, None))[0] != key:
        lm._head_path = (key, _head_path(lm.model))
    return lm._head_path[1]


def logits_at(lm: Any, kw: dict, rows: Any, positions: Any) -> Callable[[int, int], Any]:
    """``logits_of(start, end)``: logits at scored positions ``start:end`` (``rows[k], positions[k]``) of the
    batch ``kw`` (the forward's keyword arguments)."""
    head = direct_head(lm)
    if head is not None:
        hidden = lm.model.get_decoder()(**kw).last_hidden_state[rows, positions]
        return lambda s, e: head(hidden[s:e])
    first = int(positions.min())
    try:
        logits = lm.model(**kw, logits_to_keep=kw["input_ids"].shape[1] - first).logits
    except TypeError:  # an architecture without logits_to_keep: slice after the full head
        logits = lm.model(**kw).logits[:, first:]
    return lambda s, e: logits[rows[s:e], positions[s:e] - first]


def score_rows(lm: Any, rows: list, requests: list, idxs: list[int], out: list, bar: Any, cache: Any,
               plen: int) -> None:
    """Score packed rows of an HFModel ``lm`` in batches (on top of a shared prefix's KV cache when ``cache``
    is given); ``out[idxs[i]]`` gets request ``i``'s result."""
    import torch

    from instructkit.lm.cache import cache_kwargs
    from instructkit.lm.packed import packed_batch
    from instructkit.lm.prefix import expand_cache, with_prefix

    rows.sort(key=lambda r: -(len(r[0]) + sum(len(c) - 1 for _, c in r[1])))
    dev = lm.device
    vocab = lm.model.get_output_embeddings().weight.shape[0] if hasattr(lm.model, "get_output_embeddings") \
        else len(lm.tokenizer)
    for b0 in range(0, len(rows), lm.batch_size):
        batch = rows[b0: b0 + lm.batch_size]
        input_ids, mask, position_ids, spans = packed_batch(batch, lm.tokenizer.pad_token_id,
                                                             next(lm.model.parameters()).dtype)
        kw: dict[str, Any] = dict(use_cache=False)
        if cache is not None:
            mask, position_ids = with_prefix(mask, position_ids, plen)
            kw = dict(cache_kwargs(expand_cache(cache, len(batch))), use_cache=True)
        kw.update(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=position_ids.to(dev))
        b_idx, p_idx, tgt, seg, done = scored_positions(spans)
        with torch.no_grad():
            logits_of = logits_at(lm, kw, torch.tensor(b_idx, device=dev), torch.tensor(p_idx, device=dev))
            sums, greedy = continuation_scores(logits_of, vocab, torch.tensor(tgt, device=dev),
                                               torch.tensor(seg, device=dev), len(done))
        # only each continuation's log-prob and greedy flag reach the host, in one copy per batch
        for (i, n), lp, g in zip(done, sums.tolist(), greedy.tolist()):
            out[idxs[i]] = LoglikelihoodResult(float(lp), bool(g), n, len(requests[i].continuation))
            bar.update(1)
        lm.stats["ll_tokens"] += sum(len(c) + sum(len(x) - 1 for _, x in cs) for c, cs in batch)
