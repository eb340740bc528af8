"""Start-up probes: training refuses to start when the model would silently train on wrong numbers.

Two things the loop assumes but cannot see:

* **packing isolation** - a packed row holds several examples with restarting ``position_ids`` and no
  attention mask; transformers must turn that into block-diagonal attention. Whether it does depends
  on the attention kernel, the transformers/torch versions and the batch shape (flash-attention-2 only
  with one row per batch; sdpa only with ``use_cache=False``). Two short examples packed must give the
  same log-probs as each alone.
* **the LM head** - the loss wrapper applies the output embeddings itself (to skip untrained positions),
  bypassing the model's ``forward``. Models that post-process logits there (Gemma-2 soft-capping,
  Cohere/Granite scaling) need the same post-processing (``loss.logit_postprocess``); anything else the
  head does differently is caught by comparing both paths on a few tokens.

Each probe costs a few forward passes of ~12 tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from instructkit.errors import ConfigError

#: tolerated total-variation distance between the next-token distributions of two paths that should
#: compute the same numbers, per compute dtype. Total variation, not max |Δ log-prob|: in bf16 the log-probs
#: of tokens with p ~ 1e-9 move by 0.3 from rounding alone, which says nothing; a real leak moves the
#: distribution itself (measured: TV ~1e-6 fp32, ~1e-2 bf16 for correct packing; > 0.2 for a leak).
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6, torch.bfloat16: 0.1, torch.float16: 0.05}


def _tokens(vocab: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(min(10, vocab - 1), vocab, (n,), generator=g)


def _probs(lm: Any, ids: torch.Tensor, pos: torch.Tensor, device: Any) -> torch.Tensor:
    out = lm(input_ids=ids.unsqueeze(0).to(device), position_ids=pos.unsqueeze(0).to(device), use_cache=False)
    return torch.softmax(out.logits.float()[0], -1).cpu()


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Largest total-variation distance between two ``(T, vocab)`` rows of distributions."""
    return 0.5 * (p - q).abs().sum(-1).max().item()


def _dtype(lm: Any) -> torch.dtype:
    floats = [p.dtype for p in lm.parameters() if p.is_floating_point()]
    return min(floats, key=lambda d: torch.finfo(d).bits) if floats else torch.float32


@torch.no_grad()
def packing_leak(lm: Any, device: Any = "cpu", lengths: tuple[int, int] = (7, 5)) -> float:
    """Largest total-variation distance between the next-token distributions of two examples packed into
    one row and the same examples alone."""
    vocab = lm.get_output_embeddings().weight.shape[0]
    a, b = _tokens(vocab, lengths[0], 1), _tokens(vocab, lengths[1], 2)
    alone = [_probs(lm, x, torch.arange(len(x)), device) for x in (a, b)]
    packed = _probs(lm, torch.cat([a, b]), torch.cat([torch.arange(len(a)), torch.arange(len(b))]), device)
    return max(_tv(packed[:len(a)], alone[0]), _tv(packed[len(a):], alone[1]))


@torch.no_grad()
def head_mismatch(lm: Any, device: Any = "cpu", n: int = 9) -> float:
    """Largest total-variation distance between the model's own logits and the loss wrapper's head path."""
    from instructkit.train.loss import logit_postprocess

    vocab = lm.get_output_embeddings().weight.shape[0]
    ids = _tokens(vocab, n, 3)
    pos = torch.arange(n)
    own = _probs(lm, ids, pos, device)
    hidden = lm.get_decoder()(input_ids=ids.unsqueeze(0).to(device), position_ids=pos.unsqueeze(0).to(device),
                              use_cache=False).last_hidden_state[0]
    logits = logit_postprocess(lm)(lm.get_output_embeddings()(hidden).float())
    return _tv(torch.softmax(logits, -1).cpu(), own)


def check_model(lm: Any, *, packing: bool, attn_implementation: str | None, device: Any = "cpu",
                compute_dtype: torch.dtype | None = None, autocast: Any = None) -> dict[str, float]:
    """Run the probes in eval mode (no dropout), restore the mode, raise ConfigError with the reason.

    Run it on the model where it trains (its device, after FSDP/DDP prepare) and under the run's autocast.
    ``compute_dtype``: what the matmuls run in, which sets the tolerance; QLoRA (fp32 norms and adapters
    over a 4-bit base computing in bf16) and mixed precision (fp32 master weights) hold fp32 parameters
    that say nothing about the rounding of the forward. None: the smallest float dtype of the parameters."""
    import contextlib

    was_training = lm.training
    lm.eval()
    try:
        with autocast if autocast is not None else contextlib.nullcontext():
            return _check(lm, packing, attn_implementation, device, compute_dtype or _dtype(lm))
    finally:
        lm.train(was_training)


def _check(lm: Any, packing: bool, attn_implementation: str | None, device: Any,
           compute_dtype: torch.dtype) -> dict[str, float]:
    tol = TOLERANCE.get(compute_dtype, 5e-2)
    found = {"head_mismatch": head_mismatch(lm, device)}
    if found["head_mismatch"] > tol:
        raise ConfigError(
            f"the model's LM head post-processes logits in a way the loss does not reproduce "
            f"(total variation {found['head_mismatch']:.3g} > {tol:g} between model(...).logits and "
            f"head(hidden)); architecture {type(lm).__name__} is not supported for training yet")
    if packing:
        found["packing_leak"] = packing_leak(lm, device)
        if found["packing_leak"] > tol:
            raise ConfigError(
                f"packed examples attend to each other with attn_implementation={attn_implementation!r} "
                f"(total variation packed vs alone {found['packing_leak']:.3g} > {tol:g}). Use "
                "train.packing=false, or attention sdpa/eager/flash_attention_2 with transformers >= 4.53 "
                "and torch >= 2.6")
    return found
