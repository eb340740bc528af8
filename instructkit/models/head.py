"""The LM head applied by hand: ``post(head(hidden))`` at chosen positions only.

Training (the loss on trained tokens) and scoring (log-likelihood at continuation tokens) both skip the
model's own forward after the decoder: that forward computes full-vocabulary logits at every position
(batch x positions x vocabulary; 32 x 512 x 49152 fp32 = 3.2 GB), when only a few positions are needed.
Some architectures post-process logits in that forward; the head path must do the same.
"""

from __future__ import annotations

from typing import Any, Callable


def _identity(logits: Any) -> Any:
    return logits


def _softcap(cap: float) -> Callable[[Any], Any]:
    import torch
    return lambda x: torch.tanh(x / cap) * cap


#: config attribute -> what the model's own forward does to the logits after the head (we bypass that
#: forward, so the head path must do it too). Callers check the path against the model's own logits
#: (train/probe.py at start-up, lm.hf on first use), which catches any model that does something not listed.
_POSTPROCESS: dict[str, Callable[[float], Callable[[Any], Any]]] = {
    "final_logit_softcapping": _softcap,                  # Gemma-2/3
    "logit_scale": lambda s: (lambda x: x * s),           # Cohere
    "logits_scaling": lambda s: (lambda x: x / s),        # Granite
}


def logit_postprocess(lm: Any) -> Callable[[Any], Any]:
    """The model's post-head logit transform (identity for most architectures)."""
    cfg = getattr(lm, "config", None)
    fns = [make(v) for k, make in _POSTPROCESS.items()
           if (v := getattr(cfg, k, None)) not in (None, 0, 1, 1.0) and isinstance(v, (int, float))]
    if not fns:
        return _identity
    return lambda x: fns[0](x) if len(fns) == 1 else fns[1](fns[0](x))
