"""What the held-out report evaluates and how: the manifest, the plan of tasks, the training template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructkit.errors import DataError, InstructkitError


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InstructkitError(f"manifest not found: {p}")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=str(p), line=e.lineno, reason="invalid_json") from e
    held = m.get("held_out") if isinstance(m, dict) else None
    if not isinstance(held, dict) or not isinstance(held.get("tasks", []), list):
        raise DataError("expected 'held_out': {tasks: [...], clusters: [...]}", path=str(p), field="held_out",
                        reason="missing_field")
    if not isinstance(m.get("train_tasks", []), list):
        raise DataError("expected a list", path=str(p), field="train_tasks", reason="bad_type")
    return m


def eval_plan(manifest: dict, extra_held_out: list[str] | None = None,
              max_seen: int | None = None) -> tuple[list[dict], dict[str, str]]:
    """Which tasks to evaluate and how to load them: the manifest's ``held_out.refs`` / ``tasks[*].ref``
    (a YAML task is loaded by its path, not its id). T0 prompt/completion data sets have no eval split:
    they are returned in ``not_evaluated`` with the reason, never dropped silently."""
    info = manifest.get("tasks", {})
    refs = manifest["held_out"].get("refs") or {}
    held = list(dict.fromkeys(manifest["held_out"].get("tasks", [])))
    plan, skipped = [], {}
    for t in held:
        plan.append(dict(task=t, ref=refs.get(t) or (info.get(t) or {}).get("ref") or t, held_out=True,
                         cluster=(info.get(t) or {}).get("cluster")))
    for r in extra_held_out or []:
        plan.append(dict(task=r, ref=r, held_out=True, cluster=None))
    seen = []
    for t in dict.fromkeys(manifest.get("train_tasks", [])):
        if t in held:
            continue
        ti = info.get(t) or {}
        if "ref" in ti and not ti["ref"]:
            skipped[t] = "prompt/completion data set (T0 file) without an eval split"
            continue
        seen.append(dict(task=t, ref=ti.get("ref") or t, held_out=False, cluster=ti.get("cluster")))
    if max_seen is not None:
        for s in seen[max_seen:]:
            skipped[s["task"]] = f"seen task beyond max_seen={max_seen}"
        seen = seen[:max_seen]
    return plan + seen, skipped


OWN = "tokenizer"  # --chat-template value: each model's tokenizer's own chat template


def training_template(chat_template: str | None, tuned: str) -> tuple[str | None, bool]:
    """(template, apply): how eval renders contexts so they match training.

    ``"auto"``: ``model.chat_template`` of the ``recipe.yaml`` training wrote next to ``tuned``
    (RUN/model -> RUN/recipe.yaml; a null there means the tokenizer's own template, as in training), raw
    text when no recipe is found; ``None`` or ``"tokenizer"``: the tokenizer's own template (training's
    default); ``"none"``: raw text (lm-eval style, no template); else a shipped name or .jinja path."""
    if chat_template == "none":
        return None, False
    if chat_template in (None, OWN):
        return None, True
    if chat_template != "auto":
        return chat_template, True
    import yaml
    p = Path(tuned)
    for d in (p, p.parent):
        f = d / "recipe.yaml"
        if f.is_file():
            try:
                return ((yaml.safe_load(f.read_text()) or {}).get("model") or {}).get("chat_template"), True
            except yaml.YAMLError:
                return None, False
    return None, False


def rendering_name(template: str | None, apply: bool) -> str:
    return (template or OWN) if apply else "none"
