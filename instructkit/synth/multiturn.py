"""Multi-turn expansion (WizardVicuna): the teacher plays the user (follow-up questions) and the assistant.

All conversations advance one step at a time, so each step is one batched teacher call: answer the
last user message, then write the user's next message from the conversation so far. A conversation
whose follow-up or answer fails keeps the turns completed before it (counted). Output: messages JSONL
(loss on every assistant turn when read back by the data stage) and ShareGPT JSON.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from instructkit.lm.api import GenerateRequest
from instructkit.synth.report import RunReport
from instructkit.synth.teacher import derive_seed

FOLLOW_UP = """Below is a conversation between a curious user and an AI assistant. Write the user's next message: a natural follow-up that asks for more depth, a clarification, an example, or a related harder question, building on the assistant's last answer. Write only the user's message, nothing else.

{transcript}

USER:"""

_PREFIX = re.compile(r"^\s*(\*\*)?(user|human|follow[- ]up( question)?)(\*\*)?\s*:\s*", re.I)


def _transcript(msgs: list[dict[str, str]]) -> str:
    return "\n\n".join(f"{'USER' if m['role'] == 'user' else 'ASSISTANT'}: {m['content']}" for m in msgs)


def expand(cfg: Any, teacher: Any, seeds: list[dict[str, Any]], tcfg: Any) -> tuple[list[dict], RunReport]:
    rep = RunReport("multiturn", cfg.model_dump())
    sampling = dict(temperature=tcfg.temperature, top_p=tcfg.top_p, max_new_tokens=tcfg.max_new_tokens)
    convs = [{"id": s["id"], "k": k, "messages": [{"role": "user", "content": s["instruction"]}], "open": True}
             for k, s in enumerate(seeds)]
    for turn in range(cfg.turns):
        live = [c for c in convs if c["open"]]
        ans = teacher.generate([GenerateRequest(messages=c["messages"], **sampling,
                                                seed=derive_seed(cfg.seed, "answer", turn, c["k"], c["id"]))
                                for c in live], desc=f"turn {turn + 1} answers")
        for c, a in zip(live, ans):
            text = a.texts[0].strip() if a is not None else ""
            if not text:
                rep.drop("teacher_failed" if a is None else "empty_answer", c["messages"][-1]["content"][:200])
                c["messages"].pop()  # the unanswered user message
                c["open"] = False
                continue
            c["messages"].append({"role": "assistant", "content": text})
        if turn == cfg.turns - 1:
            break
        live = [c for c in convs if c["open"]]
        fus = teacher.generate([GenerateRequest(messages=[{"role": "user", "content":
                                                           FOLLOW_UP.format(transcript=_transcript(c["messages"]))}],
                                                seed=derive_seed(cfg.seed, "follow_up", turn, c["k"], c["id"]),
                                                **sampling) for c in live],
                               desc=f"turn {turn + 2} questions")
        for c, f in zip(live, fus):
            q = _PREFIX.sub("", f.texts[0]).strip() if f is not None else ""
            q = q.split("\nASSISTANT:")[0].strip()  # a teacher that goes on to answer itself
            if not q:
                rep.drop("teacher_failed" if f is None else "empty_follow_up", c["id"])
                c["open"] = False
                continue
            c["messages"].append({"role": "user", "content": q})
    out = []
    for c in convs:
        n = sum(m["role"] == "assistant" for m in c["messages"])
        if n == 0:
            rep.drop("no_complete_turn", c["id"])
            continue
        rep.counts[f"conversations_with_{n}_turns"] += 1
        out.append({"id": c["id"], "messages": c["messages"],
                    "provenance": {"method": "multiturn", "teacher": teacher.name, "turns": n, **sampling}})
        rep.keep(c["messages"][-1]["content"][:200])
    return out, rep


def write_sharegpt(path: str | Path, items: list[dict[str, Any]]) -> None:
    names = {"user": "human", "assistant": "gpt", "system": "system"}
    data = [{"id": it["id"], "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in it["messages"]]}
            for it in items]
    Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
