"""The synth stage entry points: one ``run_*`` per method (used by the CLI) and the pipeline-stage
wrappers ``fn(ctx, cfg) -> outputs`` registered with ``instructkit run`` (see issue #10's contract).

Each run writes into its output folder: ``data.messages.jsonl`` (+ ``data.alpaca.json`` when items have
instruction/output), ``report.json``/``report.md``/plots and the teacher's ``cache.jsonl``. Running the
same command again on the same folder resumes: answered requests come from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instructkit.errors import InstructkitError


def _finish(out: Path, items: list[dict], rep: Any, teacher: Any, what: str) -> dict[str, Any]:
    from instructkit.synth.io import write_outputs

    lengths = [len(" ".join(m["content"] for m in it["messages"] if m["role"] == "user").split()) for it in items]
    rep.write(out, lengths, teacher.report() if teacher is not None else None)
    if not items:
        raise InstructkitError(f"synth {what}: nothing survived (empty pool after filtering); the counts per reason "
                               f"are in {out / 'report.md'}: {dict(rep.counts)}")
    paths = write_outputs(out, items)
    return {"data": paths["messages"], **({"alpaca": paths["alpaca"]} if "alpaca" in paths else {}),
            "report": str(out / "report.json"), "kept": len(items)}


def run_self_instruct(cfg: Any, out: str | Path) -> dict[str, Any]:
    from instructkit.synth.io import build_teacher, load_seed_tasks
    from instructkit.synth.self_instruct import self_instruct

    out = Path(out)
    seeds = load_seed_tasks(cfg.seeds)
    teacher = build_teacher(cfg.teacher, out)
    items, rep = self_instruct(cfg, teacher, seeds, cfg.teacher)
    return _finish(out, items, rep, teacher, "self-instruct")


def run_evol(cfg: Any, out: str | Path) -> dict[str, Any]:
    from instructkit.synth.evol import evolve
    from instructkit.synth.io import build_teacher, load_instructions

    if not cfg.instructions:
        raise InstructkitError("synth evol: no instructions file (evol.instructions / --instructions)")
    out = Path(out)
    seeds = load_instructions(cfg.instructions)[: cfg.limit]
    teacher = build_teacher(cfg.teacher, out)
    items, rep = evolve(cfg, teacher, seeds, cfg.teacher)
    return _finish(out, items, rep, teacher, "evol")


def run_magpie(cfg: Any, out: str | Path) -> dict[str, Any]:
    from instructkit.synth.io import build_teacher
    from instructkit.synth.magpie import magpie

    out = Path(out)
    teacher = build_teacher(cfg.teacher, out)
    tok = getattr(teacher.lm, "tokenizer", None)
    if cfg.tokenizer or tok is None:
        from instructkit.models import load_tokenizer
        ref = cfg.tokenizer or cfg.teacher.model
        if ref.startswith(("http://", "https://", "py:")):
            raise InstructkitError("synth magpie: an endpoint/python teacher needs magpie.tokenizer (the served "
                                   "model's tokenizer) to derive the pre-query")
        tok = load_tokenizer(ref)
    items, rep = magpie(cfg, teacher, tok, cfg.teacher)
    return _finish(out, items, rep, teacher, "magpie")


def run_multiturn(cfg: Any, out: str | Path) -> dict[str, Any]:
    from instructkit.synth.io import build_teacher, load_instructions
    from instructkit.synth.multiturn import expand, write_sharegpt

    if not cfg.instructions:
        raise InstructkitError("synth multiturn: no instructions file (multiturn.instructions / --instructions)")
    out = Path(out)
    seeds = load_instructions(cfg.instructions)[: cfg.limit]
    teacher = build_teacher(cfg.teacher, out)
    items, rep = expand(cfg, teacher, seeds, cfg.teacher)
    res = _finish(out, items, rep, teacher, "multiturn")
    write_sharegpt(out / "data.sharegpt.json", items)
    return {**res, "sharegpt": str(out / "data.sharegpt.json")}


def run_clean(cfg: Any, out: str | Path) -> dict[str, Any]:
    from instructkit.models import load_tokenizer
    from instructkit.synth.multiturn import write_sharegpt
    from instructkit.synth.sharegpt import clean

    if not cfg.input:
        raise InstructkitError("synth clean-sharegpt: no input file (input= / --input)")
    out = Path(out)
    items, rep = clean(cfg, load_tokenizer(cfg.tokenizer))
    res = _finish(out, items, rep, None, "clean-sharegpt")
    write_sharegpt(out / "data.sharegpt.json", items)
    return {**res, "sharegpt": str(out / "data.sharegpt.json")}


# -- pipeline stages (instructkit run RECIPE.yaml) ----------------------------------------------------
def _with_input(cfg: Any, ctx: Any, field: str) -> Any:
    """An upstream stage's output (``inputs: {instructions: evol.data}``) replaces the file field."""
    val = (ctx.inputs or {}).get(field)
    return cfg.model_copy(update={field: str(val)}) if val else cfg


def self_instruct_stage(ctx: Any, cfg: Any) -> dict[str, Any]:
    return run_self_instruct(_with_input(cfg, ctx, "seeds"), ctx.out)


def evol_stage(ctx: Any, cfg: Any) -> dict[str, Any]:
    return run_evol(_with_input(cfg, ctx, "instructions"), ctx.out)


def magpie_stage(ctx: Any, cfg: Any) -> dict[str, Any]:
    return run_magpie(cfg, ctx.out)


def multiturn_stage(ctx: Any, cfg: Any) -> dict[str, Any]:
    return run_multiturn(_with_input(cfg, ctx, "instructions"), ctx.out)


def clean_stage(ctx: Any, cfg: Any) -> dict[str, Any]:
    return run_clean(_with_input(cfg, ctx, "input"), ctx.out)


def synth_files(cfg: Any) -> list[str]:
    """External files a synth stage reads (their stamps enter the pipeline fingerprint)."""
    return [str(f) for f in (getattr(cfg, k, None) for k in ("seeds", "instructions", "input")) if f and Path(f).exists()]
