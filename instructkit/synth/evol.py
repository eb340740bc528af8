"""Evol-instruct as the WizardLM paper describes it: M rounds, in-depth + in-breadth, all four eliminations.

Each round, every instruction in the pool is rewritten by one operation (sampled per instruction from
``ops``): in-depth (add constraints, deepen, concretize, increase reasoning steps, complicate input;
the rewrite may add only 10-20 words) or in-breadth (a new, rarer prompt in the same domain). An
evolution is eliminated when (1) the teacher judges it *equal* to its parent (no information gain),
(2) its response is short (< 80 words) and says sorry, (3) its response is only punctuation and stop
words, or (4) it copies the prompt's scaffolding ("given prompt", "rewritten prompt", ...) or comments on
the rewrite instead of being one ("the original prompt asks ...", "a more complex version of ..."). A failed
evolution puts its parent back into the pool for the next round; a survivor replaces it. Every item
carries its lineage (root id, parent id, operation, round).
"""

from __future__ import annotations

import random
import re
from typing import Any

from instructkit.lm.api import GenerateRequest
from instructkit.synth.report import RunReport
from instructkit.synth.teacher import derive_seed

_DEPTH = """I want you to act as a prompt rewriter. Rewrite the given prompt into a more complex version that famous AI systems (such as ChatGPT and GPT-4) find harder to handle, while a person can still understand it and answer it. Keep every non-text part of the given prompt, such as tables and code, and keep the input it contains.
How to rewrite: {how}
Keep the rewrite concise: #Rewritten Prompt# may add only 10 to 20 words to #Given Prompt#. Do not use the words 'given prompt' or 'rewritten prompt' in it.

#Given Prompt#:
{instruction}

#Rewritten Prompt#:
"""

_HOW = {
    "constraints": "add one more constraint or requirement to it.",
    "deepen": "if it asks about a specific issue, make the depth and breadth of the inquiry greater.",
    "concretize": "replace general concepts with more specific ones.",
    "reasoning": "if it can be solved with only a few simple thinking steps, rewrite it so that it explicitly asks for multi-step reasoning.",
    "complicate_input": "add a concrete input in a more complex format (a table, code, a formula, or JSON data) that the prompt must work on.",
}

_BREADTH = """I want you to act as a prompt creator. Take inspiration from the given prompt and create a brand-new prompt in the same domain, on a rarer topic. The new prompt should be about as long and as hard as the given one, and a person must be able to understand and answer it. Do not use the words 'given prompt' or 'created prompt' in it.

#Given Prompt#:
{instruction}

#Created Prompt#:
"""

_EQUAL = """Here are two instructions to an AI assistant. Do you think they are equal to each other? They are equal when they have the same constraints and requirements and the same depth and breadth of inquiry.
First instruction: {a}
Second instruction: {b}
Answer with exactly one of: Equal, Not Equal."""

SCAFFOLD = ("given prompt", "rewritten prompt", "created prompt", "#rewritten prompt#", "#given prompt#", "#created prompt#")
STOP_WORDS = frozenset("""a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once
only or other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves ok okay yes""".split())


# A small teacher often starts by repeating the label our prompt ends with ("#Rewritten Prompt#:") and then
# writes a usable rewrite. distilabel's EvolInstruct keeps only what follows the last "Prompt#:"
# (``split("Prompt#:")[-1]``); WizardLM's released code keeps the raw text. We strip only a leading echo of
# the label (any case, spacing, '#' or markdown bold) and count it, so rule 4 still catches scaffolding words
# anywhere inside the rewrite itself.
_ECHO = re.compile(r"\A\s*(?:\*\*|__)?\s*(?P<h1>#+)?\s*(?:the\s+)?{label}\s+prompt\s*(?P<h2>#+)?\s*(?:\*\*|__)?"
                   r"\s*(?P<colon>:)?\s*(?:\*\*|__)?[ \t]*\n?")


def strip_label_echo(text: str, label: str) -> tuple[str, bool]:
    """Remove a leading ``#<Label> Prompt#:`` echo (label: "rewritten" or "created"); (text, stripped?).

    A bare "Rewritten prompt ..." at the start with neither '#' nor ':' is prose, not an echo: left alone.
    """
    m = re.match(_ECHO.pattern.format(label=label), text, re.I)
    if m is None or not (m.group("h1") or m.group("h2") or m.group("colon")):
        return text, False
    return text[m.end():].strip(), True


# Rule 4, widened: a teacher that talks *about* the rewrite instead of writing it ("The original prompt asks
# for ...; the rewritten version adds ...", "Here is a more complex version of the prompt:") copies no
# label word, yet its output is commentary, not an instruction. WizardLM's rule names only the label words.
_COMMENTARY = re.compile(
    r"\b(?:(?:original|given|rewritten|revised|created|updated|modified|evolved|previous|above|initial)\s+prompts?"
    r"|(?:original|rewritten|revised|evolved)\s+(?:instruction|question|task|version)s?"  # not "the given task"
    r"|(?:more\s+)?(?:complex|challenging|difficult|advanced)\s+version\s+of"
    r"|(?:this|the)\s+(?:prompt|instruction)\s+(?:now|has\s+been|was|asks|requires|adds)"
    r"|here\s+is\s+(?:a|the|my)\s+(?:rewritten|revised|new|more)\b)", re.I)


def eliminate_by_prompt(evolved: str) -> str | None:
    """Rule 4 (and an empty rewrite): the reason, or None."""
    if not evolved.strip():
        return "empty_evolution"
    low = evolved.lower()
    if any(s in low for s in SCAFFOLD):
        return "rule4_copies_scaffolding"
    return "rule4_commentary_about_prompt" if _COMMENTARY.search(evolved) else None


def eliminate_by_response(response: str) -> str | None:
    """Rules 2 and 3 on the evolved instruction's response."""
    words = response.split()
    if len(words) < 80 and "sorry" in response.lower():
        return "rule2_short_sorry"
    toks = re.findall(r"[a-z0-9']+", response.lower())
    if all(t in STOP_WORDS for t in toks):  # also an empty or punctuation-only response
        return "rule3_only_stopwords_punctuation"
    return None


def judge_equal(text: str) -> bool | None:
    """Parse the equality judgement: True (equal), False (not equal), None (unreadable)."""
    low = text.strip().lower()
    if re.search(r"\bnot\s+equal\b|\bunequal\b|\bnot the same\b|\bdifferent\b", low):
        return False
    if re.search(r"\bequal\b|\bthe same\b", low):
        return True
    return None


def evolve(cfg: Any, teacher: Any, seeds: list[dict[str, Any]], tcfg: Any) -> tuple[list[dict], RunReport]:
    rep = RunReport("evol-instruct", cfg.model_dump())
    sampling = dict(temperature=tcfg.temperature, top_p=tcfg.top_p, max_new_tokens=tcfg.max_new_tokens)
    unknown = [o for o in cfg.ops if o not in _HOW and o != "breadth"]
    if unknown:
        from instructkit.errors import ConfigError
        raise ConfigError(f"evol.ops: unknown operation(s) {unknown}; known: {sorted(_HOW) + ['breadth']}")
    pool = [dict(id=s["id"], instruction=s["instruction"], root=s["id"], parent=None, op=None, round=0) for s in seeds]
    kept: list[dict[str, Any]] = []
    for rnd in range(1, cfg.rounds + 1):
        ops = [random.Random(f"{cfg.seed}/{rnd}/{p['id']}").choice(cfg.ops) for p in pool]
        prompts = [(_BREADTH.format(instruction=p["instruction"]) if op == "breadth" else
                    _DEPTH.format(how=_HOW[op], instruction=p["instruction"])) for p, op in zip(pool, ops)]
        res = teacher.generate([GenerateRequest(messages=[{"role": "user", "content": t}],
                                                seed=derive_seed(cfg.seed, "evolve", rnd, k, p["id"]), **sampling)
                                for k, (t, p) in enumerate(zip(prompts, pool))], desc=f"evolve round {rnd}")
        elim: dict[str, int] = {}
        n_echo = 0
        cands = []
        for p, op, r in zip(pool, ops, res):
            if r is None:
                reason = "teacher_failed"
            else:
                text, echoed = strip_label_echo(r.texts[0].strip(), "created" if op == "breadth" else "rewritten")
                if echoed:  # counted, not a drop: the item goes on to the eliminations
                    rep.counts["stripped_label_echo"] += 1
                    n_echo += 1
                reason = eliminate_by_prompt(text)
            if reason:
                elim[reason] = elim.get(reason, 0) + 1
                rep.drop(reason, None if r is None else [p["instruction"], r.texts[0][:300]])
                continue
            cands.append((p, op, text))
        if cfg.judge_equal and cands:
            js = teacher.generate([GenerateRequest(messages=[{"role": "user", "content": _EQUAL.format(a=p["instruction"], b=t)}],
                                                   temperature=0.0, max_new_tokens=8) for p, _, t in cands],
                                  desc=f"judge round {rnd}")
            nxt = []
            for c, j in zip(cands, js):
                verdict = judge_equal(j.texts[0]) if j is not None else None
                if verdict is None:
                    rep.counts["judge_unreadable_kept"] += 1  # no evidence of "no gain": kept, but counted
                if verdict:
                    elim["rule1_no_information_gain"] = elim.get("rule1_no_information_gain", 0) + 1
                    rep.drop("rule1_no_information_gain", [c[0]["instruction"], c[2]])
                    continue
                nxt.append(c)
            cands = nxt
        responses: list[Any] = [None] * len(cands)
        if cfg.respond and cands:
            responses = teacher.generate([GenerateRequest(messages=[{"role": "user", "content": t}],
                                                          seed=derive_seed(cfg.seed, "respond", rnd, p["id"]), **sampling)
                                          for p, _, t in cands], desc=f"respond round {rnd}")
        survivors: dict[str, dict[str, Any]] = {}
        for (p, op, text), resp in zip(cands, responses):
            if cfg.respond:
                reason = "teacher_failed" if resp is None else eliminate_by_response(resp.texts[0])
                if reason:
                    elim[reason] = elim.get(reason, 0) + 1
                    rep.drop(reason, [text, None if resp is None else resp.texts[0][:200]])
                    continue
            item = dict(id=f"{p['root']}.r{rnd}", instruction=text, root=p["root"], parent=p["id"], op=op, round=rnd,
                        output=resp.texts[0].strip() if resp is not None else None)
            survivors[p["id"]] = item
            rep.keep(text)
        for it in survivors.values():
            prov = dict(method="evol-instruct", root=it["root"], parent=it["parent"], op=it["op"], round=rnd,
                        teacher=teacher.name, **sampling)
            out = dict(id=it["id"], instruction=it["instruction"], input="", provenance=prov)
            if it["output"] is not None:
                out["output"] = it["output"]
                out["messages"] = [{"role": "user", "content": it["instruction"]}, {"role": "assistant", "content": it["output"]}]
            else:
                out["messages"] = [{"role": "user", "content": it["instruction"]}]
            kept.append(out)
        # failed evolutions go back to the pool unchanged; survivors replace their parents
        pool = [survivors.get(p["id"], p) for p in pool]
        n_words = [len(x["instruction"].split()) for x in survivors.values()]
        rep.rounds.append({"round": rnd, "evolved": len(pool), "survived": len(survivors),
                           "survival": len(survivors) / max(1, len(pool)),
                           "mean_words": sum(n_words) / len(n_words) if n_words else 0.0,
                           "ops": dict(sorted({o: ops.count(o) for o in set(ops)}.items())), "eliminated": elim,
                           "stripped_label_echo": n_echo})
    return kept, rep
