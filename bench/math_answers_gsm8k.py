"""GSM8K answers scored two ways: math-verify (where installed) vs our own number extraction.

    instructkit eval --model smollm2-135m-instruct --tasks gsm8k --fmt few_shot_cot --limit 60 --out runs/gsm8k
    python bench/math_answers_gsm8k.py runs/gsm8k [--limit 60 --model smollm2-135m-instruct]
    python bench/math_answers_gsm8k.py - --references 1000 --data-dir ../shared/data   # reference solutions

Reads the completions from ``predictions.jsonl`` (or, for a run still in progress, from its
``cache.jsonl`` keyed as the eval would key them), scores each completion with both scorers and prints
accuracy under each plus every disagreement (completion tail, gold, both answers) for a person to judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def completions(out: Path, limit: int, model: str, data_dir: str | None) -> list[tuple[str, str, str]]:
    """(example_id, completion, target) for every finished GSM8K item."""
    pred = out / "predictions.jsonl"
    if pred.is_file():
        rows = [json.loads(x) for x in pred.read_text().splitlines() if x.strip()]
        return [(r["example_id"], r["completions"][0], r["target"]) for r in rows if r.get("completions")]
    from instructkit.eval.cache import request_key
    from instructkit.eval.sets import load_eval_set
    from instructkit.eval.runner import requests_for
    from instructkit.lm.hf import HFModel

    es = load_eval_set("gsm8k", "few_shot_cot", limit, **({"data_dir": Path(data_dir)} if data_dir else {}))
    lm = HFModel(model, dtype="float32", batch_size=8, progress=False)
    cache = {}
    for line in (out / "cache.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            cache[r["k"]] = r["r"]
    _, gen = requests_for(es, chat=False)
    out_rows = []
    for it, req in zip([i for i in es.items if i.choices is None], gen):
        hit = cache.get(request_key(lm.fingerprint, "generate", req))
        if hit:
            out_rows.append((it.example_id, hit["texts"][0], it.target))
    return out_rows


def references(path: Path, n: int) -> list[tuple[str, str, str]]:
    """GSM8K's own worked solutions with the final ``#### N`` line removed: correct by construction, so a
    scorer that marks one wrong is the one that erred. ``<<48/2=24>>`` calculator notes are removed too."""
    import re

    rows = []
    for i, line in enumerate(path.read_text().splitlines()[:n]):
        r = json.loads(line)
        body, gold = r["answer"].rsplit("####", 1)
        rows.append((f"gsm8k:train:{i}", re.sub(r"<<[^>]*>>", "", body).strip(), gold.strip()))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--references", type=int, default=0, help="score the first N train.jsonl worked solutions "
                                                                 "(without their #### line) instead of OUT")
    a = ap.parse_args()
    from instructkit.data.tasks import math_answers
    from instructkit.data.tasks.answers import AnswerSpec

    spec, ours = AnswerSpec("math", "math"), AnswerSpec("number", "numeric")  # GSM8K's declared scoring / ours
    if math_answers.verifier() is None:
        raise SystemExit("math-verify is not installed: pip install 'instructkit[math]'")
    rows = (references(Path(a.data_dir or "../shared/data") / "gsm8k" / "train.jsonl", a.references) if a.references
            else completions(Path(a.out), a.limit, a.model, a.data_dir))
    mv_ok = ours_ok = 0
    diffs = []
    real = math_answers.verifier
    for ex, text, target in rows:
        ans_mv = spec.extract_text(text)
        s_mv = spec.score(ans_mv, target)
        ans_ours = ours.extract_text(text)
        s_ours = ours.score(ans_ours, target)
        mv_ok += s_mv == 1.0
        ours_ok += s_ours == 1.0
        if s_mv != s_ours or ans_mv != ans_ours:
            diffs.append(dict(example=ex, target=target, math_verify=(ans_mv, s_mv), ours=(ans_ours, s_ours),
                              tail=text[-240:]))
    n = len(rows)
    print(f"{n} GSM8K completions: math-verify ({real()}) correct {mv_ok}/{n}, ours correct {ours_ok}/{n}; "
          f"answers differ on {len(diffs)}, verdicts differ on {sum(d['math_verify'][1] != d['ours'][1] for d in diffs)}")
    for d in diffs:
        print(json.dumps(d, ensure_ascii=False))


if __name__ == "__main__":
    main()
