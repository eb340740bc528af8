"""The built-in stage functions: thin adapters from a recipe to the stage packages' library functions.

Each is ``fn(ctx, cfg) -> outputs``; ``cfg`` is the recipe with the stage's overlay (see registry.py).
Heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructkit.errors import ConfigError


def _paths(v: Any) -> list[str]:
    return [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


# --- mix ---------------------------------------------------------------------------------------------------
def mix_files(cfg: Any) -> list[str]:
    m = cfg.mix
    if m is None:
        return []
    local = [t for t in m.tasks if Path(t).exists()]
    return local + list(m.t0_dirs) + ([m.promptsource_dir] if m.promptsource_dir else [])


def mix(ctx: Any, cfg: Any) -> dict:
    from instructkit.data.tasks.build import run_mix

    if cfg.mix is None:
        raise ConfigError("the mix stage needs a mix: section (in the recipe or in the stage's config)")
    tok = None
    if cfg.mix.tokenizer:
        from instructkit.models import load_tokenizer
        tok = load_tokenizer(cfg.mix.tokenizer)
    man = run_mix(cfg.mix, cfg.seed, str(ctx.out), tok)
    ctx.console.print(f"{man['totals']['examples']} examples; clusters: "
                      + ", ".join(f"{c}={n}" for c, n in man["clusters"].items())
                      + f"; held out: {', '.join(man['held_out']['tasks']) or 'none'}", highlight=False)
    return {"mixture": str(ctx.out / "mixture.jsonl"), "manifest": str(ctx.out / "manifest.json"),
            "examples": man["totals"]["examples"], "held_out": man["held_out"]["tasks"]}


# --- train -------------------------------------------------------------------------------------------------
def train_files(cfg: Any) -> list[str]:
    return [p for p in cfg.data.paths if Path(p).exists()]


def train(ctx: Any, cfg: Any) -> dict:
    """Inputs: ``data`` (a file or list of files: replaces data.paths), ``model`` (start from this model)."""
    from instructkit.train import train as run_train

    upd: dict[str, Any] = {"output_dir": str(ctx.out)}
    if "data" in ctx.inputs:
        upd["data"] = cfg.data.model_copy(update={"paths": _paths(ctx.inputs["data"])})
    if "model" in ctx.inputs:
        start = Path(str(ctx.inputs["model"]))
        if (start / "adapter_config.json").is_file():  # continue from a LoRA stage: merge it into its base first
            from instructkit.train.export import export_merged
            merged = ctx.out / "start"
            if not (merged / "config.json").is_file():
                ctx.console.print(f"merging the adapter {start} into its base -> {merged}")
                export_merged(start, merged, overwrite=True)
            start = merged
        upd["model"] = cfg.model.model_copy(update={"name_or_path": str(start)})
    if "reward_model" in ctx.inputs:  # online RL (train.objective=ppo/grpo/rloo): rewards of kind model use it
        rm = str(ctx.inputs["reward_model"])
        rewards = [r.model_copy(update={"path": r.path or rm}) if r.kind == "model" else r for r in cfg.train.rl.rewards]
        upd["train"] = cfg.train.model_copy(update={"rl": cfg.train.rl.model_copy(update={"rewards": rewards})})
    if ctx.resuming and any(ctx.out.glob("checkpoint-*")):
        upd["train"] = upd.get("train", cfg.train).model_copy(update={"resume": "auto"})
        ctx.console.print(f"resuming from the checkpoints in {ctx.out}")
    recipe = cfg.model_copy(update=upd)
    res = run_train(recipe)
    return {"model": str(res.model_dir), "final_loss": res.final_loss, "summary": str(ctx.out / "summary.json"),
            "steps": res.summary.get("steps"), "wall_time_s": res.summary.get("wall_time_s"),
            "adapter": cfg.train.method in ("lora", "dora", "qlora")}


# --- eval --------------------------------------------------------------------------------------------------
def _model_ref(ctx: Any, cfg: Any, key: str = "model") -> str:
    v = ctx.inputs.get(key)
    if isinstance(v, dict):  # a whole stage's outputs was passed: take its model
        v = v.get("model")
    return str(v or cfg.eval.model or cfg.model.name_or_path)


def evaluate(ctx: Any, cfg: Any) -> dict:
    """Evaluate input ``model`` (else eval.model, else model.name_or_path) on eval.tasks; resumes from its cache."""
    from instructkit.eval.cli import load_sets, make_lm  # library helpers of the eval stage
    from instructkit.eval.runner import evaluate as run_eval

    e = cfg.eval
    if not e.tasks:
        raise ConfigError("eval.tasks is empty: name the tasks to evaluate (recipe eval: or the stage's config)")
    ref = _model_ref(ctx, cfg)
    sets = load_sets(e)
    for es in sets:
        if es.dropped:
            ctx.console.print(f"{es.name}: dropped {dict(es.dropped)}")
    # the prompts are rendered with the training template, as the model saw them in training
    lm = make_lm(ref, e, cfg.model.chat_template)
    res = run_eval(lm, sets, ctx.out, self_consistency=e.self_consistency, temperature=e.temperature, seed=e.seed,
                   extra={"config": e.model_dump(mode="json"), "model_ref": ref})
    scores = {}
    for name, r in res["tasks"].items():
        m = r["main_metric"]
        v = r["metrics"].get(m, {}) if m else {}
        # the CI is the eval stage's bootstrap over examples (templates of one example move together)
        ci = v.get("ci") or ([v["value"] - 1.96 * v["stderr"], v["value"] + 1.96 * v["stderr"]]
                             if v.get("stderr") is not None else None)
        scores[name] = {"format": r["format"], "n": r.get("n_examples", r["n"]), "items": r["n"], "metric": m,
                        "value": v.get("value"), "ci": ci, "chance": r.get("chance"),
                        "unparsed": r.get("unparsed", 0)}  # generated answers no extraction could parse
        ctx.console.print(f"  {name:<28} {r['format']:<14} n={scores[name]['n']:<5} "
                          f"{m}={v.get('value', float('nan')):.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""),
                          highlight=False)
    return {"results": str(ctx.out / "results.json"), "scores": scores, "model": ref}


def held_out(ctx: Any, cfg: Any) -> dict:
    """The held-out report (FLAN/T0): base / tuned / oracle, zero-shot, 95% CIs, chance, verdicts.

    Inputs: ``manifest`` (mix.manifest), ``tuned`` (train.model), optional ``oracle`` (a model trained on
    the held-out tasks), optional ``base`` (default: the recipe's model). ``cfg``: :class:`HeldOutConfig`."""
    from instructkit.eval.report import held_out_report

    for k in ("manifest", "tuned"):
        if k not in ctx.inputs:
            raise ConfigError(f"eval.held_out needs input {k!r} (e.g. inputs: {{manifest: mix.manifest, "
                              "tuned: train.model}})")
    r = ctx.recipe
    base = _model_ref(ctx, r, "base") if "base" in ctx.inputs else r.model.name_or_path
    # one input per training seed: tuned, tuned_1, tuned_2, ... (oracle likewise)
    seeds = lambda kind: [_model_ref(ctx, r, k) for k in sorted(ctx.inputs, key=lambda k: (len(k), k))  # noqa: E731
                          if k == kind or (k.startswith(kind + "_") and k[len(kind) + 1:].isdigit())]
    tuned, oracle = seeds("tuned"), seeds("oracle") or None
    options = cfg.options
    if options is None:  # format parity: the share of OPTIONS prompts training used
        man = json.loads(Path(ctx.inputs["manifest"]).read_text())
        options = float((man.get("caps") or {}).get("options_prob") or 0.0)
    rep = held_out_report(base, tuned, ctx.inputs["manifest"], ctx.out, oracle=oracle,
                          limit=cfg.limit, templates=cfg.templates, seed=r.seed, chat_template=r.model.chat_template,
                          held_out=list(cfg.held_out) or None, max_seen=cfg.max_seen,
                          contamination=cfg.contamination, dtype=cfg.dtype, batch_size=cfg.batch_size,
                          progress=True, options=options, twins=cfg.twins, calibrate_all=cfg.calibrate_all,
                          preregistered=dict(cfg.preregistered) or None)
    if cfg.results_log:
        from instructkit.eval.results_log import append_result
        append_result(cfg.results_log, r.name, rep)
    return {"report": str(ctx.out / "report.json"), "markdown": str(ctx.out / "report.md"),
            "clusters": rep["clusters"], "base": base, "tuned": tuned[0], "oracle": oracle[0] if oracle else None}


# --- report ------------------------------------------------------------------------------------------------
def report(ctx: Any, cfg: Any) -> dict:
    """One table over every input: eval stages' scores (value ± 95% CI) and held-out reports' clusters.

    Inputs named ``MODEL/SETTING`` (e.g. ``cot/few-shot CoT``) also get one table per task with a row per
    model and a column per setting - the layout of the Flan 2022 CoT ablation. Training and preference-pair
    inputs get a "Stages" list (steps, loss, reward margin/accuracy; pairs and their counts)."""
    from instructkit.pipeline.report_stages import stage_lines, stage_rows

    rows = []
    for label, outs in ctx.inputs.items():
        if not isinstance(outs, dict):
            raise ConfigError(f"report input {label!r} must be a whole stage (e.g. {label}: eval), not one output")
        for task, sc in (outs.get("scores") or {}).items():
            rows.append({"run": label, "model": outs.get("model"), "task": task, "format": sc["format"],
                         "n": sc["n"], "metric": sc["metric"], "value": sc["value"], "ci": sc.get("ci"),
                         "chance": sc.get("chance"), "unparsed": sc.get("unparsed")})
        for c in outs.get("clusters") or []:
            task = f"cluster {c['cluster']}" + (" (held-out)" if c.get("held_out") else " (seen)")
            scores = c.get("scores") or {m: {"value": c[m]} for m in ("base", "tuned") if m in c}
            for model, sc in scores.items():
                if not sc:
                    continue
                lo, hi = (sc.get("ci") or (None, None))
                rows.append({"run": f"{label}/{model}", "model": model, "task": task, "format": "zero_shot",
                             "n": c.get("n_examples", c.get("n_tasks")), "metric": "accuracy",
                             "value": sc["value"], "ci": None if lo is None else [lo, hi], "chance": c.get("chance")})
    lines = [f"# {cfg.name}", "", cfg.description, "",
             "| run | task | format | n | metric | value | 95% CI | chance (best baseline) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v = "n/a" if r["value"] is None else (f"{r['value']:.4f}" if isinstance(r["value"], (int, float))
                                              else str(r["value"]))  # counts (tool calls) stay text
        ci = "" if not r["ci"] else f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
        ch = "" if r.get("chance") is None else f"{r['chance']:.3f}"
        if r.get("unparsed"):  # counted wrong and shown: never a silent extraction failure
            v += f" ({r['unparsed']} unparsed)"
        lines.append(f"| {r['run']} | {r['task']} | {r['format']} | {r['n']} | {r['metric']} | {v} | {ci} | {ch} |")
    lines += _pivot(rows)
    stages = stage_rows(ctx.inputs)  # training runs (steps, loss, reward margin) and preference pairs
    lines += stage_lines(stages)
    (ctx.out / "report.md").write_text("\n".join(lines) + "\n")
    (ctx.out / "report.json").write_text(json.dumps({"name": cfg.name, "rows": rows, "stages": stages}, indent=1))
    ctx.console.print("\n".join(lines[4:]), highlight=False, markup=False)
    return {"report": str(ctx.out / "report.md"), "json": str(ctx.out / "report.json"), "rows": len(rows)}


def _pivot(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if "/" in r["run"]]
    out: list[str] = []
    for task in dict.fromkeys(r["task"] for r in rows):
        cells = {tuple(r["run"].split("/", 1)): r for r in rows if r["task"] == task}
        models = list(dict.fromkeys(m for m, _ in cells))
        settings = list(dict.fromkeys(s for _, s in cells))
        out += ["", f"## {task}", "", "| model | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
        for m in models:
            vals = []
            for s in settings:
                r = cells.get((m, s))
                vals.append("" if r is None or r["value"] is None else str(r["value"]) if isinstance(r["value"], str)
                            else f"{r['value']:.3f}" + ("" if not r["ci"] else f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"))
            out.append(f"| {m} | " + " | ".join(vals) + " |")
    return out
