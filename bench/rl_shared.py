"""bench_rl's pure pieces (no torch, no TRL at import): the reward both contenders get, how instructkit's GRPO
settings map onto TRL's ``GRPOConfig``, the useful-FLOP model of one GRPO step, the fixed completions of the
loss-parity check, and small arithmetic of the report. Unit-tested in tests/unit/bench/test_bench_rl.py.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

# -- the reward: one plain function, given to both (instructkit: train.rl.rewards kind=function by dotted path;
#    TRL: reward_funcs=[answer_reward], the dataset column ``answers`` arrives as a keyword) ---------------------
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` (thousands commas allowed), or None."""
    found = _NUMBER.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def completion_text(c: Any) -> str:
    """A completion as text: instructkit passes strings, TRL (conversational prompts) ``[{"role", "content"}]``."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        return str(c[-1].get("content", ""))
    return str(c)


def answer_reward(prompts: Sequence[Any], completions: Sequence[Any], answers: Sequence[Any] | None = None,
                  **_: Any) -> list[float]:
    """1.0 when the completion's last number equals the gold answer's (the times_word task's declared check,
    ``extract: number, compare: numeric``, without math-verify), else 0.0."""
    if answers is None:
        raise ValueError("answer_reward needs the gold answers (keyword `answers`)")
    out = []
    for c, gold in zip(completions, answers):
        gold = gold[0] if isinstance(gold, (list, tuple)) and gold else gold
        x, y = last_number(completion_text(c)), last_number(str(gold))
        out.append(float(x is not None and y is not None and abs(x - y) < 1e-9))
    return out


# -- instructkit's GRPO settings -> TRL's GRPOConfig -------------------------------------------------------------
#: instructkit ``train.rl.loss_agg`` -> TRL ``loss_type`` computing the same normalisation. ``token``: sum of the
#: step's completion-token losses / their number = TRL ``dapo`` (num_items_in_batch over the generation batch;
#: with one generation per optimizer step and no accumulation ``bnpo`` is the same); ``sequence``: mean per
#: completion, then over completions = TRL ``grpo``; ``dr_grpo``: / (completions x max_new_tokens) = TRL ``dr_grpo``.
LOSS_TYPE = {"token": "dapo", "sequence": "grpo", "dr_grpo": "dr_grpo"}


def trl_grpo_kwargs(rl: Any, *, completions_per_step: int) -> dict[str, Any]:
    """The GRPOConfig fields that make TRL run instructkit's algorithm (``rl`` = a recipe's ``train.rl``).

    On policy, one update per rollout: ``num_iterations=1`` and the generation batch = one optimizer step's
    completions (``steps_per_generation=1``), so TRL's old log-probs are the training forward's own (ratio 1),
    exactly as instructkit does. ``top_k=0``: no top-k filter (instructkit's sampler has none)."""
    return {"num_generations": rl.num_generations, "max_completion_length": rl.max_new_tokens,
            "temperature": rl.temperature, "top_p": rl.top_p, "top_k": 0, "beta": rl.beta,
            "epsilon": rl.clip_eps_low, "epsilon_high": rl.clip_eps_high, "loss_type": LOSS_TYPE[rl.loss_agg],
            "scale_rewards": "group" if rl.scale_rewards else "none", "num_iterations": 1,
            "per_device_train_batch_size": completions_per_step, "gradient_accumulation_steps": 1,
            "generation_batch_size": completions_per_step, "mask_truncated_completions": False}


# -- useful FLOPs of one GRPO step ------------------------------------------------------------------------------
def step_flops(groups: Sequence[tuple[int, Sequence[int]]], *, n_body: int, vocab_x_d: int, n_layers: int,
               d_model: int, n_lora: int = 0, lora: bool = True, reference: bool = True) -> dict[str, float]:
    """Useful FLOPs of one step from its groups ``(prompt length, [completion lengths])``.

    Counted once per prompt, as a shared-prefix implementation needs it: the prompt's tokens (prefill, the
    reference pass and the training pass all attend the same prompt), once per completion: its tokens.
    Per token: 2 N_body forward (N_body = parameters without the embedding / LM head); the LM head 2 V d only
    where a completion token is predicted; attention 4 L d per attended position (QK^T and AV, causal context).
    * rollout: one forward (decode and prefill);
    * reference: one forward (when ``reference``, i.e. beta > 0 or a LoRA reference for the logged KL);
    * training: forward + backward; LoRA: 4 N_body + 6 N_lora per token and 4 V d at the head (frozen base and
      head need no weight gradient), full: 6 N_body and 6 V d; attention 12 L d per attended position.
    What neither counts: padding, prompts repeated per completion (TRL), tokens generated after EOS (HF
    ``generate`` keeps decoding finished rows), recomputation. FLOPs of a multiply-add = 2."""
    tokens = head = ctx = 0.0
    for p, comps in groups:
        tokens += p + sum(comps)
        head += sum(comps)
        ctx += p * (p + 1) / 2 + sum(c * p + c * (c + 1) / 2 for c in comps)
    fwd = 2.0 * n_body * tokens + 2.0 * vocab_x_d * head + 4.0 * n_layers * d_model * ctx
    if lora:
        train = (4.0 * n_body + 6.0 * n_lora) * tokens + 4.0 * vocab_x_d * head
    else:
        train = 6.0 * n_body * tokens + 6.0 * vocab_x_d * head
    train += 12.0 * n_layers * d_model * ctx
    out = {"rollout": fwd, "reference": fwd if reference else 0.0, "train": train}
    out["total"] = sum(out.values())
    return out


def group_lengths(prompt_lens: Sequence[int], completion_lens: Sequence[int], g: int) -> list[tuple[int, list[int]]]:
    """Rows in prompt order, G consecutive per prompt (both tools' layout) -> ``[(prompt len, [G lengths])]``."""
    if len(prompt_lens) != len(completion_lens) or len(prompt_lens) % g:
        raise ValueError(f"{len(prompt_lens)} prompts / {len(completion_lens)} completions are not groups of {g}")
    return [(int(prompt_lens[i]), [int(x) for x in completion_lens[i:i + g]]) for i in range(0, len(prompt_lens), g)]


# -- the loss-parity check: fixed completions instead of sampling ------------------------------------------------
PARITY_TEXTS = ("{a}", "The answer is {a}.", "It is {w}.", "{a} in total, since every one holds the same number.",
                "Let me think step by step about this problem before I answer it: the total is {w}",
                "So {a}.", "Hmm, maybe {w}? No: it is {a}.", "I am not sure.")


def parity_texts(answer: Any, g: int, rotate: int) -> list[tuple[str, bool]]:
    """G fixed completion texts of one prompt, ``(text, ends with EOS)``: right and wrong answers of different
    lengths (so the advantages and the token-weighted loss are not zero), one left unfinished (no EOS)."""
    a = last_number(str(answer[0] if isinstance(answer, (list, tuple)) else answer))
    a_i = int(a) if a is not None else 0
    out = []
    for j in range(g):
        k = (j + rotate) % len(PARITY_TEXTS)
        out.append((PARITY_TEXTS[k].format(a=a_i, w=a_i + 1 + j), k != 4))
    return out


# -- report arithmetic ---------------------------------------------------------------------------------------------
def rel_diff(a: float, b: float) -> float:
    """|a - b| / max(|a|, |b|) (0 when both are 0)."""
    m = max(abs(a), abs(b))
    return abs(a - b) / m if m else 0.0


def steady(values: Sequence[float], skip: int = 1) -> list[float]:
    """Drop the first ``skip`` entries (warm-up) when more remain."""
    return list(values[skip:]) if len(values) > skip else list(values)
