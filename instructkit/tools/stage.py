"""Pipeline stages of the LaMDA-toolset recipe (``recipes/lamda_tools.yaml``).

* ``tools.convert_gsm8k``: GSM8K solutions with ``<<a=b>>`` annotations -> tool-call conversations;
* ``tools.gsm8k_eval``: a model on a fixed GSM8K test subset, with and without the calculator in the loop.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field

from instructkit.config.base import Section


class ConvertGsm8kConfig(Section):
    source: Optional[str] = Field(None, description="GSM8K JSONL (question, answer); default: "
                                  "$INSTRUCTKIT_SHARED or ../shared/data, gsm8k/train.jsonl.")
    limit: Optional[int] = Field(None, description="Keep at most this many conversations.")
    offset: int = Field(0, description="Skip the first N records.")
    tools: bool = Field(True, description="Tool-call conversations (false: plain CoT, annotations removed).")


class Gsm8kToolEvalConfig(Section):
    test: Optional[str] = Field(None, description="GSM8K test JSONL; default: the shared data's gsm8k/test.jsonl.")
    n: int = Field(50, description="Size of the fixed test subset (items offset..offset+n).")
    offset: int = Field(0, description="First test item.")
    model: Optional[str] = Field(None, description="Model to score (default: input 'model', else the recipe's).")
    template: str = Field("chatml_tools", description="Tools-aware chat template used for prompts.")
    parser: str = Field("hermes", description="Tool-call format: hermes, llama3_json, mistral, react.")
    max_calls: int = Field(8, description="Tool calls executed per problem at most (the loop's K).")
    max_new_tokens: int = Field(200, description="Tokens per generation round (with tools: up to the next call).")
    plain_max_new_tokens: Optional[int] = Field(None, description="Tokens of the one reply without tools (the "
                                                "whole solution; default max_new_tokens).")
    batch_size: int = Field(8, description="Problems generated together.")


def _shared(path: Optional[str], name: str) -> str:
    if path:
        return path
    from instructkit.data.shared import shared_data_dir
    return str(shared_data_dir() / "gsm8k" / name)


def convert_files(cfg: ConvertGsm8kConfig) -> list[str]:
    return [_shared(cfg.source, "train.jsonl")]


def eval_files(cfg: Gsm8kToolEvalConfig) -> list[str]:
    return [_shared(cfg.test, "test.jsonl")]


def convert_gsm8k(ctx: Any, cfg: ConvertGsm8kConfig) -> dict:
    import json

    from instructkit.tools.convert import convert_gsm8k as run

    rep = run(_shared(cfg.source, "train.jsonl"), ctx.out / "data.jsonl", limit=cfg.limit, offset=cfg.offset, tools=cfg.tools)
    (ctx.out / "report.json").write_text(json.dumps(rep, indent=1))
    c = rep["counts"]
    rejected = {k: v for k, v in c.items() if k not in ("read", "kept", "calls")}
    ctx.console.print(f"GSM8K -> tool conversations: read {c.get('read', 0)}, kept {c.get('kept', 0)}, "
                      f"{c.get('calls', 0)} calculator calls, rejected {rejected or 0}")
    return {"data": str(ctx.out / "data.jsonl"), "report": str(ctx.out / "report.json"), "kept": c.get("kept", 0)}


def gsm8k_eval(ctx: Any, cfg: Gsm8kToolEvalConfig) -> dict:
    from instructkit.tools.experiment import gsm8k_tool_eval

    model = cfg.model or ctx.inputs.get("model") or ctx.recipe.model.name_or_path
    res = gsm8k_tool_eval(str(model), _shared(cfg.test, "test.jsonl"), ctx.out, n=cfg.n, offset=cfg.offset, template=cfg.template,
                          parser=cfg.parser, max_calls=cfg.max_calls, max_new_tokens=cfg.max_new_tokens,
                          plain_max_new_tokens=cfg.plain_max_new_tokens,
                          batch_size=cfg.batch_size,
                          progress=lambda k, n: ctx.console.print(f"  gsm8k tools eval: {k}/{n}"))
    ctx.console.print((ctx.out / "report.md").read_text(), highlight=False, markup=False)
    return {"results": str(ctx.out / "results.json"), "report": str(ctx.out / "report.md"),
            "scores": report_scores(res, "gsm8k"), "model": str(model)}


def report_scores(res: dict, task: str) -> dict:
    """A tool eval's results in the shape the ``report`` stage reads: one row per mode and one for the
    paired delta, each with ``ci``, the same 95% bootstrap interval as the eval's own report.md (the
    report stage prints ``ci``; a ``stderr`` alone left its CI column blank)."""
    scores = {}
    for mode, m in res["modes"].items():
        # chance 0: the answer is an exact number / a name, not a choice among a few
        scores[f"{task}_{mode}"] = {"format": mode, "n": res["n"], "metric": "acc", "value": m["accuracy"],
                                    "ci": list(m["ci95"]), "chance": 0.0}
        c = m.get("counts") or {}
        if mode == "with_tools" and c:  # the LaMDA question is also *whether* the model calls its tools
            scores[f"{task}_tool_calls"] = {
                "format": mode, "n": res["n"], "metric": "tool calls made / parsed / executed / failed",
                "value": f"{c.get('made', 0)} / {c.get('parsed', 0)} / {c.get('executed', 0)} / {c.get('failed', 0)}"}
    d = res["delta_with_minus_without"]
    scores[f"{task}_delta"] = {"format": "with - without (paired)", "n": res["n"], "metric": "acc delta",
                               "value": d["value"], "ci": list(d["ci95"])}
    return scores


class PeopleQaConfig(Section):
    n_people: int = Field(120, description="People in the generated directory (the corpus to index).")
    n_train: int = Field(200, description="Tool conversations (search call, result, grounded answer).")
    n_test: int = Field(60, description="Held-out questions.")


class RetrievalEvalConfig(Section):
    n: int = Field(50, description="Questions scored (the first n of the test file).")
    model: Optional[str] = Field(None, description="Model to score (default: input 'model', else the recipe's).")
    template: str = Field("chatml_tools", description="Tools-aware chat template used for prompts.")
    parser: str = Field("hermes", description="Tool-call format.")
    max_calls: int = Field(4, description="Tool calls executed per question at most.")
    max_new_tokens: int = Field(64, description="Tokens per generation round.")
    plain_max_new_tokens: Optional[int] = Field(None, description="Tokens of the one reply without tools "
                                                "(default max_new_tokens).")
    batch_size: int = Field(8, description="Questions generated together.")


def people_qa(ctx: Any, cfg: PeopleQaConfig) -> dict:
    from instructkit.tools.convert import build_people_qa

    rep = build_people_qa(ctx.out, n_people=cfg.n_people, n_train=cfg.n_train, n_test=cfg.n_test, seed=ctx.seed)
    ctx.console.print(f"people directory: {rep['people']} passages indexed, {rep['n_train']} tool conversations, "
                      f"{rep['n_test']} test questions")
    return rep


def retrieval_eval(ctx: Any, cfg: RetrievalEvalConfig) -> dict:
    from instructkit.errors import ConfigError
    from instructkit.tools.experiment import retrieval_qa_eval

    for k in ("test", "index"):
        if k not in ctx.inputs:
            raise ConfigError(f"tools.retrieval_eval needs input {k!r} (e.g. inputs: {{test: people.test, "
                              "index: people.index}})")
    model = cfg.model or ctx.inputs.get("model") or ctx.recipe.model.name_or_path
    res = retrieval_qa_eval(str(model), ctx.inputs["test"], ctx.inputs["index"], ctx.out, n=cfg.n,
                            template=cfg.template, parser=cfg.parser, max_calls=cfg.max_calls,
                            max_new_tokens=cfg.max_new_tokens, plain_max_new_tokens=cfg.plain_max_new_tokens,
                            batch_size=cfg.batch_size,
                            progress=lambda k, n: ctx.console.print(f"  retrieval QA eval: {k}/{n}"))
    ctx.console.print((ctx.out / "report.md").read_text(), highlight=False, markup=False)
    return {"results": str(ctx.out / "results.json"), "report": str(ctx.out / "report.md"),
            "scores": report_scores(res, "retrieval_qa"), "model": str(model)}
