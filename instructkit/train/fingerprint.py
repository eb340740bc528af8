"""What makes a resumed run the SAME run: a fingerprint stored in every checkpoint and checked on resume.

Exact resume replays the data order from ``(seed, epoch)`` and skips ``step_in_epoch * grad_accum``
micro-batches. That is only the same run when the rows, their order, the batch geometry and the schedule
are unchanged; otherwise the resumed run silently trains on other examples (or twice on the same) with
another LR curve. So every checkpoint stores the fingerprint below, and resume refuses a mismatch with a
message naming each field that changed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from instructkit.errors import ConfigError

#: field -> what a user changed when it differs (the error message)
FIELDS = {
    "seed": "the seed (data order)",
    "total_steps": "the number of optimizer steps (epochs / max_steps; the LR schedule depends on it)",
    "world_size": "the number of processes",
    "micro_batch_size": "train.micro_batch_size",
    "grad_accum": "train.grad_accum",
    "packing": "train.packing",
    "n_rows": "the number of training rows (data, max_length or pack_tokens)",
    "data": "the training rows themselves (data files, template, tokenizer, max_length or packing)",
    "objective": "the objective's settings",
}


def objective_settings(train: Any) -> dict[str, Any]:
    """What the loss optimised depends on beyond the rows, flat by config key: the objective, DPO's loss and
    its beta / gamma (resolved: an unset beta follows the loss), label smoothing, dropout, Muppet's weights.
    A change between a kill and ``--resume`` would splice two different objectives into one run."""
    out: dict[str, Any] = {"train.objective": train.objective}
    if train.objective in ("dpo", "reward"):
        out["train.dpo.disable_dropout"] = train.dpo.disable_dropout
    if train.objective == "dpo":
        d = train.dpo
        out.update({"train.dpo.loss": d.loss, "train.dpo.label_smoothing": d.label_smoothing,
                    **{f"train.dpo.{k}": v for k, v in d.resolved().items()}})
    if train.objective in ("grpo", "rloo", "ppo"):  # online RL: rollouts, rewards and loss settings
        out.update({f"train.rl.{k}": v for k, v in train.rl.model_dump(exclude={"log_samples"}).items()})
    if getattr(train, "muppet", None) is not None:
        out.update({f"train.muppet.{k}": v for k, v in train.muppet.model_dump().items()})
    return out


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """sha256 over every row's input ids and labels, in order (~1 s per million tokens)."""
    h = hashlib.sha256()
    for r in rows:
        for key in ("input_ids", "labels"):
            h.update(r[key].numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()[:20]


def run_fingerprint(rows: Sequence[dict[str, Any]], *, seed: int, total_steps: int, world_size: int,
                    micro_batch_size: int, grad_accum: int, packing: bool,
                    objective: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"seed": seed, "total_steps": total_steps, "world_size": world_size, "micro_batch_size": micro_batch_size,
            "grad_accum": grad_accum, "packing": packing, "n_rows": len(rows), "data": rows_digest(rows),
            "objective": dict(objective or {})}


def _changes(key: str, old: Any, new: Any) -> list[str]:
    if key != "objective":
        return [f"{FIELDS[key]}: checkpoint {old!r}, now {new!r}"]
    # name each setting that changed (a key missing on one side: the checkpoint's run had no such setting)
    return [f"{k}: checkpoint {old.get(k, 'unset')!r}, now {new.get(k, 'unset')!r}"
            for k in sorted(set(old) | set(new)) if old.get(k, "unset") != new.get(k, "unset")]


def check_resume(saved: dict[str, Any], current: dict[str, Any], checkpoint: Any) -> None:
    """Raise ConfigError naming every field where the checkpoint's run and this run differ.

    Checkpoints written before fingerprints existed carry only seed and total_steps: those are compared
    (and those written before the objective's settings were recorded are not checked for them)."""
    stored = saved.get("fingerprint") or {k: saved[k] for k in ("seed", "total_steps") if k in saved}
    changed = [c for k in FIELDS if k in stored and k in current and stored[k] != current[k]
               for c in _changes(k, stored[k], current[k])]
    if changed:
        raise ConfigError(f"cannot resume from {checkpoint}: this is not the same run. Changed since the "
                          f"checkpoint: " + "; ".join(changed) + ". Restore the settings, or start a new run "
                          "in another output_dir (or without --resume)")
