"""Self-instruct, as Alpaca ran it and as the paper ran it.

* ``alpaca``: each request shows 3 sampled seed tasks (instruction, input, output) and asks the teacher
  for the rest of a 20-item numbered list in the same format; one request yields many full tasks.
* ``paper``: each request shows 8 instructions (6 human seeds + 2 machine-generated once the pool has
  some, shuffled together) and asks for more instructions; then, as the paper: the teacher says whether
  each instruction is a classification task, and writes its instances output-first (classification) or
  input-first (:mod:`instructkit.synth.self_instruct_paper`).

Every parsed instruction passes the filters in :mod:`instructkit.synth.filters` (ROUGE-L novelty
against the whole pool, seeds included, blacklist, length, punctuation/non-ASCII start, missing input,
exact duplicate, 13-gram contamination); every drop is counted by reason. Requests are derived from
(seed, round, index) only, so a rerun after a crash asks the same questions and the cache answers them.
"""

from __future__ import annotations

import random
from typing import Any

from instructkit.errors import InstructkitError
from instructkit.lm.api import GenerateRequest
from instructkit.synth.filters import (InstructionFilter, contamination_index, instance_problem, parse_alpaca_list,
                                       parse_task_list)
from instructkit.synth.io import alpaca_messages
from instructkit.synth.report import RunReport
from instructkit.synth.teacher import derive_seed

ALPACA_PROMPT = """Write {n} varied task instructions that a capable AI assistant will be asked to complete, each with an optional input and a good answer.

Rules:
1. Vary the verbs and the wording; no two tasks should read alike.
2. Mix many kinds of tasks: open-ended writing, classification, editing, rewriting, question answering, brainstorming, reasoning, math, coding.
3. Each instruction is in English, one or two sentences, a command or a question.
4. The assistant can only read and write text: no tasks that need seeing images, hearing audio, or acting in the world.
5. If a task needs an input, give a concrete, realistic one (under 100 words); otherwise write <noinput> as the input.
6. The output is a correct, helpful answer of under 100 words.

Use exactly this format, items separated by ###:
{examples}
###
{next}. Instruction:"""

PAPER_PROMPT = """Here is a list of tasks that people ask an AI assistant to do. Continue the list with {m} new and different tasks, one per line, numbered like the others.

{examples}
Task {next}:"""

def _alpaca_examples(tasks: list[dict[str, Any]]) -> str:
    blocks = []
    for i, t in enumerate(tasks, 1):
        blocks.append(f"{i}. Instruction: {t['instruction']}\n{i}. Input:\n{t['input'] or '<noinput>'}\n"
                      f"{i}. Output:\n{t['output']}")
    return "\n###\n".join(blocks)


def self_instruct(cfg: Any, teacher: Any, seeds: list[dict[str, Any]], tcfg: Any) -> tuple[list[dict], RunReport]:
    """Run until ``cfg.num_instructions`` are kept or ``cfg.max_rounds`` rounds pass."""
    rep = RunReport(f"self-instruct ({cfg.style})", cfg.model_dump())
    flt = InstructionFilter(min_words=cfg.min_words, max_words=cfg.max_words, blacklist=cfg.blacklist,
                            rouge_threshold=cfg.rouge_threshold,
                            contamination_index=contamination_index(cfg.contamination) if cfg.contamination else None)
    for s in seeds:
        flt.add_existing(s["instruction"], s["input"])
    k = cfg.num_prompt_seeds or (3 if cfg.style == "alpaca" else 6)
    if k > len(seeds):
        raise InstructkitError(f"{cfg.seeds}: {len(seeds)} seed tasks, but the prompt needs {k} (num_prompt_seeds)")
    kept: list[dict[str, Any]] = []
    kept_extra: list[dict[str, Any]] = []  # paper style, instances_per_task > 1: not counted as instructions
    sampling = dict(temperature=tcfg.temperature, top_p=tcfg.top_p, max_new_tokens=tcfg.max_new_tokens)
    for rnd in range(cfg.max_rounds):
        if len(kept) >= cfg.num_instructions:
            break
        reqs, prov = [], []
        for j in range(cfg.requests_per_round):
            rng = random.Random(f"{cfg.seed}/{rnd}/{j}")
            shown = rng.sample(seeds, k)
            machine = rng.sample(kept, min(cfg.num_prompt_machine, len(kept))) if cfg.style == "paper" else []
            if cfg.style == "alpaca":
                prompt = ALPACA_PROMPT.format(n=cfg.tasks_per_request, examples=_alpaca_examples(shown), next=k + 1)
            else:
                shuffled = shown + machine
                rng.shuffle(shuffled)  # the paper shuffles: machine tasks are not always the last two
                lines = [f"Task {i}: {t['instruction']}" for i, t in enumerate(shuffled, 1)]
                prompt = PAPER_PROMPT.format(m=cfg.tasks_per_request, examples="\n".join(lines), next=len(lines) + 1)
            reqs.append(GenerateRequest(messages=[{"role": "user", "content": prompt}], seed=derive_seed(cfg.seed, "tasks", rnd, j),
                                        **sampling))
            prov.append({"round": rnd, "request": j, "seed_ids": [t["id"] for t in shown],
                         "machine_ids": [t["id"] for t in machine]})
        results = teacher.generate(reqs, desc=f"round {rnd}")
        before = len(kept)
        candidates: list[tuple[dict, dict]] = []
        for res, pv in zip(results, prov):
            if res is None:
                rep.drop("teacher_failed")
                continue
            text = res.texts[0]
            if cfg.style == "alpaca":
                # the answer continues our "N. Instruction:" line unless it opens with a number of its own: a reply
                # like '1. Sentence: "..."\n2. Output: ...' must not become the instruction '1. Sentence: ...'
                lead = not text.lstrip()[:1].isdigit()
                items, fails = parse_alpaca_list(f"{k + 1}. Instruction:" + text if lead else text)
                if lead and not items and len(fails) == 1:
                    fails = ["unparseable_response"]
            else:
                ins, fails = parse_task_list(f"Task {k + len(pv['machine_ids']) + 1}: " + text)
                items = [{"instruction": i, "input": None, "output": None} for i in ins]
            for f in fails:
                rep.drop("parse:" + f, text[:300])
            rep.counts["parsed"] += len(items)
            if cfg.style == "alpaca":  # counted as parsed, then as dropped: parsed = kept + drops holds
                items = _usable(items, res, reqs[pv["request"]].max_new_tokens, rep)
            candidates += [(it, pv) for it in items]
        if cfg.style == "paper":
            candidates = _paper_instances(candidates, seeds, teacher, rep, cfg, rnd, sampling)
        for it, pv in candidates:
            if len(kept) >= cfg.num_instructions:
                rep.drop("over_target")
                continue
            reason = flt.check(it["instruction"], it["input"], it["output"])
            if reason:
                ex = it["instruction"] if reason != "rouge_l_similar" else [it["instruction"], flt.last_similar]
                rep.drop(reason, ex)
                continue
            flt.accept(it["instruction"], it["input"])
            more, clf = it.pop("more", []), it.pop("is_classification", None)
            prov = dict(pv, method="self-instruct", style=cfg.style, teacher=teacher.name, **sampling,
                        **({} if clf is None else {"is_classification": clf}))
            iid = f"si_{rnd}_{pv['request']}_{len(kept)}"
            kept.append(dict(id=iid, **it, messages=alpaca_messages(it["instruction"], it["input"], it["output"]),
                             provenance=prov))
            rep.keep(it["instruction"])
            for j, (inp, out) in enumerate(more, 1):  # paper: further instances of the same task
                kept_extra.append(dict(id=f"{iid}_{j}", instruction=it["instruction"], input=inp, output=out,
                                       messages=alpaca_messages(it["instruction"], inp, out), provenance=prov))
                rep.counts["extra_instances"] += 1
        new = [len(x["instruction"].split()) for x in kept[before:]]
        rep.rounds.append({"round": rnd, "requests": len(reqs), "candidates": len(candidates), "kept": len(new),
                           "pool": len(kept), "survival": len(new) / max(1, len(candidates)),
                           "mean_words": sum(new) / len(new) if new else 0.0})
    return kept + kept_extra, rep


def _usable(items: list[dict], res: Any, max_new_tokens: int, rep: RunReport) -> list[dict]:
    """Alpaca style: an answer cut at the token limit loses its last item (unfinished, as the paper's
    prepare_for_finetuning does); degenerate or repetitive instances are dropped. Each counted."""
    if items and res.n_tokens and res.n_tokens[0] >= max_new_tokens:
        rep.drop("instance_truncated_at_max_tokens", items[-1]["output"][-200:])
        items = items[:-1]
    keep = []
    for it in items:
        why = instance_problem(it["input"], it["output"])
        if why:
            rep.drop(why, [it["instruction"], it["input"][:100], it["output"][:200]])
            continue
        keep.append(it)
    return keep


def _paper_instances(cands: list[tuple[dict, dict]], seeds: list[dict[str, Any]], teacher: Any, rep: RunReport,
                     cfg: Any, rnd: int, sampling: dict) -> list[tuple[dict, dict]]:
    """Paper style: instructions are filtered first (cheap), then classified and given instances."""
    from instructkit.synth.self_instruct_paper import paper_instances

    pre = []
    probe = InstructionFilter(min_words=cfg.min_words, max_words=cfg.max_words, blacklist=cfg.blacklist)
    for it, pv in cands:
        # length/blacklist/start rules need no instance: drop early, count once (the full check runs later)
        r = probe.check(it["instruction"], "x")
        if r in ("too_short", "too_long", "blacklist", "starts_with_punctuation", "starts_non_ascii"):
            rep.drop(r, it["instruction"])
            continue
        pre.append((it, pv))
    return paper_instances(pre, seeds, teacher, rep, cfg, rnd, sampling)
