"""``train.objective`` -> how the run is set up: data, model + loss wrapper, and the loop's batch hooks.

``OBJECTIVES["sft"]`` is the engine's own setup (``train/api.py``); ``dpo`` and ``reward`` read preference
files, pack chosen + rejected together (``batches.py``), wrap the model with their loss
(``objectives.py`` / ``reward.py``) and, for DPO, attach the cached reference log-probs to every row
(``refcache.py``) before the first step. Everything else - loop, optimizer, checkpoints, resume,
metrics files, summary - is shared with SFT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("instructkit.train")


@dataclass
class Objective:
    setup_data: Callable[..., Any]  # (recipe, tokenizer, examples=, eval_examples=) -> TrainData
    setup_model: Callable[..., tuple[Any, int, int]]  # (recipe, accelerator, model, data) -> wrapper, counts
    loop_hooks: Callable[[], dict[str, Any]]  # extra LoopConfig fields (collate, count_fn)


def preference_data(recipe: Any, tokenizer: Any, *, examples: Any = None, eval_examples: Any = None) -> Any:
    """Preference files -> rows of whole pairs (+ a held-out split), with the reader's skip counts."""
    import hashlib

    from instructkit.chat.render import resolve_template
    from instructkit.data.preference import fingerprint_pairs, load_pairs
    from instructkit.errors import InstructkitError
    from instructkit.train.build import TrainData
    from instructkit.train.data import split
    from instructkit.train.preference.batches import pair_rows

    if examples is not None or eval_examples is not None:
        raise InstructkitError(f"train.objective={recipe.train.objective} reads preference files from data.paths; "
                               "in-memory examples= are SFT only")
    t, d, m = recipe.train, recipe.data, recipe.model
    pairs, report, truncated = load_pairs(d.paths, tokenizer, template=m.chat_template, max_length=d.max_length,
                               on_error=d.on_error, limit=d.limit)
    if not pairs:
        why = str(report).replace("\n", "\n  ") if report.total else "the files hold no records (empty?)"
        raise InstructkitError(f"no preference pair left to train on in {', '.join(map(str, d.paths))}:\n  {why}")
    train_pairs, eval_pairs = split(pairs, d.val_fraction, recipe.seed)
    if t.eval_every and not eval_pairs:
        raise InstructkitError("train.eval_every is set but there is no held-out pair (set data.val_fraction)")
    rows = pair_rows(train_pairs, t.packing, t.pack_tokens)
    eval_rows = pair_rows(eval_pairs, t.packing, t.pack_tokens) if eval_pairs else []
    tokens = sum(len(r["input_ids"]) for r in rows)
    stats = {"pairs_used": len(train_pairs), "eval_pairs": len(eval_pairs), "rows": len(rows),
             "eval_rows": len(eval_rows), "truncated": truncated,
             "real_tokens": tokens, "skipped": report.to_dict(),
             "fingerprint": fingerprint_pairs(train_pairs), "eval_fingerprint": fingerprint_pairs(eval_pairs),
             "template": hashlib.sha256(resolve_template(m.chat_template, tokenizer).encode()).hexdigest()[:16]}
    if report.total:
        log.info("%s", report)
    if truncated:
        log.info("%d pair sides truncated to data.max_length=%d (kept)", truncated, d.max_length)
    return TrainData(rows=rows, eval_rows=eval_rows, stats=stats, report={})


def _dpo_model(recipe: Any, accelerator: Any, model: Any, data: Any) -> tuple[Any, int, int]:
    from instructkit.train.build import setup_model
    from instructkit.train.preference import refcache
    from instructkit.train.preference.batches import attach_reference
    from instructkit.train.preference.losses import REFERENCE_FREE
    from instructkit.train.preference.objectives import build_dpo

    t, m = recipe.train, recipe.model
    # pairs are always packed (chosen + rejected in one row): probe that path. The wrapper comes back
    # prepared (on its device, DDP/FSDP-wrapped): the reference pass runs on it, split across ranks.
    def wrap(lm: Any) -> Any:
        _no_dropout(lm, t.dpo.disable_dropout, data)  # before prepare: modules and config, every rank
        return build_dpo(lm, t.dpo, t.loss_chunk_size)

    wrapper, trainable, total = setup_model(recipe, accelerator, model, packing=True, wrap=wrap)
    if t.dpo.loss in REFERENCE_FREE:
        attach_reference(data.rows, None)
        attach_reference(data.eval_rows, None)
        data.stats["reference"] = "none (reference-free loss)"
        return wrapper, trainable, total
    from accelerate.utils import gather_object

    digest = refcache.weights_digest(accelerator.unwrap_model(wrapper).lm, gather=gather_object)
    for name, rows in (("train", data.rows), ("eval", data.eval_rows)):
        if not rows:
            continue
        n = sum(len(r["pair_ids"]) for r in rows)
        fp = data.stats["fingerprint" if name == "train" else "eval_fingerprint"]
        key = refcache.cache_key(data_fingerprint=fp, model_name=m.name_or_path, weights=digest,
                                 template_source=data.stats["template"], max_length=recipe.data.max_length,
                                 dtype=m.dtype, mixed_precision=str(accelerator.mixed_precision))
        ref, info = refcache.reference_logprobs(wrapper, rows, n, key, accelerator=accelerator,
                                                cache_dir=t.dpo.ref_cache_dir, chunk=t.loss_chunk_size,
                                                progress=t.progress and accelerator.is_main_process)
        attach_reference(rows, ref)
        data.stats[f"reference_{name}"] = {"cache": info["path"], "hit": info["cached"]}
    return wrapper, trainable, total


def _reward_model(recipe: Any, accelerator: Any, model: Any, data: Any) -> tuple[Any, int, int]:
    from instructkit.errors import ConfigError
    from instructkit.models import load_model
    from instructkit.train import distributed as dist
    from instructkit.train.methods import AdapterSpec, build_model, meta_model, param_counts
    from instructkit.train.preference.reward import RewardLoss, to_reward_model

    t, m = recipe.train, recipe.model
    if t.method != "full":
        raise ConfigError(f"train.method={t.method}: train.objective=reward trains full weights (the new scalar "
                          "head must be trained and saved with the body); use train.method=full")
    if model is not None:
        causal = model
    elif dist.meta_rank(accelerator):
        causal = meta_model(m.name_or_path, dtype=m.dtype, attn_implementation=m.attn_implementation)
    else:
        causal = load_model(m.name_or_path, dtype=m.dtype, attn_implementation=m.attn_implementation,
                            device_map=dist.load_device_map(accelerator))
    spec = AdapterSpec(t.lora.r, t.lora.alpha, t.lora.dropout, list(t.lora.target_modules))
    rm = build_model(m.name_or_path, method="full", dtype=m.dtype, attn_implementation=m.attn_implementation,
                     spec=spec, gradient_checkpointing=t.gradient_checkpointing, model=to_reward_model(causal),
                     device_type=accelerator.device.type, master_fp32=accelerator.mixed_precision != "no")
    _no_dropout(rm, t.dpo.disable_dropout, data)
    trainable, total = param_counts(rm)
    return dist.prepare_model(accelerator, RewardLoss(rm)), trainable, total


def _no_dropout(model: Any, disable: bool, data: Any) -> None:
    from instructkit.train.preference.dropout import disable_dropout

    if disable:
        n = disable_dropout(model)
        data.stats["dropout"] = f"disabled ({n} settings were > 0)" if n else "none"
    else:
        data.stats["dropout"] = "kept (train.dpo.disable_dropout=false)"


def _pair_hooks() -> dict[str, Any]:
    from instructkit.train.preference.batches import collate_pairs, count_pairs
    return {"collate": collate_pairs, "count_fn": count_pairs}


def _sft() -> Objective:
    from instructkit.train import build
    return Objective(build.setup_data, lambda recipe, acc, model, data: build.setup_model(recipe, acc, model), dict)


def _rl(algo: str) -> Any:
    from instructkit.train.rl.setup import RLObjective  # online RL: train/rl (same Objective interface + finish)
    return RLObjective(algo)


OBJECTIVES: dict[str, Callable[[], Any]] = {
    "sft": _sft,
    "dpo": lambda: Objective(preference_data, _dpo_model, _pair_hooks),
    "reward": lambda: Objective(preference_data, _reward_model, _pair_hooks),
    "grpo": lambda: _rl("grpo"), "rloo": lambda: _rl("rloo"), "ppo": lambda: _rl("ppo"),
}
