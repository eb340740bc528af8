"""A task with and without its tool in the loop (GSM8K + calculator, retrieval QA + search): accuracy
with 95% CIs (Wilson per mode, paired bootstrap for the delta) and tool-call counts.

The same model and the same fixed test subset are scored twice: ``with_tools`` runs the tool loop
(calculator schema in the prompt, calls executed, results fed back, up to ``max_calls``);
``without_tools`` renders the question alone (no schema, nothing executed) and scores the single
reply. A reply that still emits a call without tools is counted (``calls_without_tools``) and scored
on its text. The paired bootstrap over the shared items gives the delta's interval.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from instructkit.jsonl import read_jsonl
from instructkit.tools.convert import iter_gsm8k


def _target(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def _score(text: str, target: str) -> tuple[str, float]:
    from instructkit.data.tasks.answers import compare_numeric, extract_number
    pred = extract_number(text)
    return pred, compare_numeric(pred, target)


def _contains(text: str, target: str) -> tuple[str, float]:
    from instructkit.data.tasks.answers import normalize
    return text.strip(), float(f" {normalize(target)} " in f" {normalize(text)} ")


SCORERS = {"number": _score, "contains": _contains}


def gsm8k_tool_eval(model: str, test_path: str | Path, out_dir: str | Path, *, n: int = 50, offset: int = 0,
                    **kw: Any) -> dict[str, Any]:
    """Score ``model`` on GSM8K items ``offset .. offset+n`` of ``test_path`` with and without the calculator."""
    items = [{"question": r["question"], "target": _target(r["answer"])}
             for k, (_n, r) in enumerate(iter_gsm8k(test_path)) if offset <= k < offset + n]
    return tool_eval(model, items, "calculator", out_dir, scorer="number",
                     meta={"test": str(test_path), "offset": offset, "task": "gsm8k"}, **kw)


def retrieval_qa_eval(model: str, test_path: str | Path, index: str | Path, out_dir: str | Path, *,
                      n: int = 50, **kw: Any) -> dict[str, Any]:
    """Score ``model`` on a retrieval QA set (``question``, ``answer``) with and without the search tool."""
    rows = read_jsonl(test_path, objects=True)
    items = [{"question": r["question"], "target": str(r["answer"])} for r in rows[:n]]
    return tool_eval(model, items, "search", out_dir, scorer="contains", tool_options={"index": str(index)},
                     meta={"test": str(test_path), "offset": 0, "task": "retrieval_qa"}, **kw)


def tool_eval(model: str, items: list[dict[str, str]], tools: str, out_dir: str | Path, *, scorer: str,
              template: str = "chatml_tools", parser: str = "hermes", max_calls: int = 8,
              max_new_tokens: int = 200, plain_max_new_tokens: int | None = None, batch_size: int = 8,
              dtype: str = "float32",
              tool_options: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
              progress: Any = None) -> dict[str, Any]:
    """Each item (``question``, ``target``) answered twice by the same model: through the tool loop with
    ``tools``, and from the question alone; accuracy with 95% bootstrap CIs, paired delta, call counts."""
    from instructkit.chat import Renderer
    from instructkit.lm.api import GenerateRequest
    from instructkit.lm.hf import HFModel
    from instructkit.stats import paired_bootstrap
    from instructkit.toolset.loop import ToolLoop
    from instructkit.chat.tool_parsers import get_parser
    from instructkit.toolset.registry import load_toolset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    score = SCORERS[scorer]
    # the reply without tools is the whole solution in one generation; with tools each round only runs
    # up to the next call, so the two budgets differ (a cut-off solution is a wrong one)
    plain_tokens = plain_max_new_tokens or max_new_tokens
    lm = HFModel(model, dtype=dtype, batch_size=batch_size, progress=False)
    renderer = Renderer(lm.tokenizer, template)
    fam = get_parser(parser)
    loop = ToolLoop(lm, load_toolset(tools, **(tool_options or {})), renderer, fam, max_calls=max_calls,
                    max_new_tokens=max_new_tokens)
    rows: list[dict[str, Any]] = []
    totals: dict[str, Counter] = {"with_tools": Counter(), "without_tools": Counter()}
    for b in range(0, len(items), batch_size):
        chunk = items[b: b + batch_size]
        users = [[{"role": "user", "content": r["question"]}] for r in chunk]
        looped = loop.run_many(users)
        plain = lm.generate([GenerateRequest(prompt=renderer.prompt_text(u), max_new_tokens=plain_tokens)
                             for u in users])
        for k, (rec, lr, pr) in enumerate(zip(chunk, looped, plain)):
            target = rec["target"]
            p_with, s_with = score(lr.final, target)
            raw = pr.texts[0]
            parsed = fam.parse(raw)
            p_wo, s_wo = score(parsed.content or raw, target)
            totals["with_tools"].update(lr.stats)
            totals["without_tools"]["calls_without_tools"] += len(parsed.calls) + len(parsed.errors)
            rows.append({"idx": b + k, "question": rec["question"], "target": target, "with_tools": {
                "prediction": p_with, "correct": s_with, "stopped": lr.stopped, "stats": dict(lr.stats),
                "messages": [m.to_openai() for m in lr.messages]},
                "without_tools": {"prediction": p_wo, "correct": s_wo, "text": raw}})
        if progress:
            progress(len(rows), len(items))
    res: dict[str, Any] = {"model": model, "n": len(rows), "tools": tools, "template": template, "parser": parser,
                           "max_calls": max_calls, "max_new_tokens": max_new_tokens,
                           "plain_max_new_tokens": plain_tokens, **(meta or {}), "modes": {}}
    for mode in ("with_tools", "without_tools"):
        acc, lo, hi = accuracy_ci([r[mode]["correct"] for r in rows])
        res["modes"][mode] = {"accuracy": acc, "ci95": [lo, hi], "counts": dict(totals[mode])}
    d, dlo, dhi = paired_bootstrap([r["without_tools"]["correct"] for r in rows],
                                   [r["with_tools"]["correct"] for r in rows])
    res["delta_with_minus_without"] = {"value": d, "ci95": [dlo, dhi]}
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "results.json").write_text(json.dumps(res, indent=2))
    (out / "report.md").write_text(report_markdown(res))
    return res


def accuracy_ci(correct: list[float]) -> tuple[float, float, float]:
    """(accuracy, lo, hi): the Wilson 95% interval of a 0/1 score. Not the percentile bootstrap: at
    0/n or n/n every resample has the same mean, so it reports [0, 0] - no uncertainty - exactly where
    a small 135M run lands; Wilson gives e.g. [0, 0.24] for 0/12."""
    from scipy.stats import binomtest

    n = len(correct)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    k = int(round(sum(correct)))
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def report_markdown(res: dict[str, Any]) -> str:
    c = res["modes"]["with_tools"]["counts"]
    lines = [f"# {res.get('task', 'task')} with and without {res['tools']}: {res['model']}", "",
             f"test subset: items {res['offset']}..{res['offset'] + res['n'] - 1} of {res['test']} (n={res['n']}); "
             f"template {res['template']}, parser {res['parser']}, at most {res['max_calls']} calls, "
             f"{res.get('max_new_tokens')} new tokens per round with tools, {res.get('plain_max_new_tokens')} "
             "without", "",
             "| mode | accuracy | 95% CI (Wilson) |", "|---|---|---|"]
    for mode, m in res["modes"].items():
        lines.append(f"| {mode} | {m['accuracy']:.3f} | [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] |")
    d = res["delta_with_minus_without"]
    lines += ["", f"delta (with - without): {d['value']:+.3f}, paired-bootstrap 95% CI "
                  f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
              + (" (every pair agrees, so the bootstrap has nothing to resample: not a certainty)"
                 if d["ci95"][0] == d["ci95"][1] else ""), "",
              f"tool calls with tools: made {c.get('made', 0)}, parsed {c.get('parsed', 0)}, "
              f"failed {c.get('failed', 0)} (parse {c.get('parse_failed', 0)}, run {c.get('run_failed', 0)}), "
              f"executed {c.get('executed', 0)}, conversations stopped at the call limit {c.get('limit_hit', 0)}",
              f"calls emitted without tools (not executed): "
              f"{res['modes']['without_tools']['counts'].get('calls_without_tools', 0)}"]
    return "\n".join(lines) + "\n"
