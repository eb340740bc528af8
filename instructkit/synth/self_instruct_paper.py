"""The self-instruct paper's second and third steps (Wang et al. 2022; yizhongw/self-instruct):

* ``identify_clf_or_not.py``: the teacher is asked, few-shot and greedily, whether each new instruction
  is a classification task with finite output labels ("Is it classification? Yes/No");
* ``generate_instances.py``: classification tasks get *output-first* instances (the class label first,
  then an input for it, so labels are not all the majority class); other tasks get *input-first*
  instances ("Example 1 ... Output: ..."), several per task when the teacher writes several;
* ``prepare_for_finetuning.py``: an answer cut at the token limit loses its last instance; instances with
  input == output, an empty output or a field ending in ':' are dropped, and a task whose instances give
  one input two outputs loses them all. We also drop degenerate and repetitive instances. Counted.

The few-shot examples come from the seed tasks themselves (their ``is_classification`` field and first
instance, as in the self-instruct seed file), or a few built-in ones when seeds lack the field.
"""

from __future__ import annotations

import random
import re
from typing import Any

from instructkit.lm.api import GenerateRequest
from instructkit.synth.filters import instance_problem
from instructkit.synth.teacher import derive_seed

CLF_PROMPT = "Can the following task be regarded as a classification task with finite output labels?\n\n{examples}\n\n" \
             "Task: {instruction}\nIs it classification?"
OUTPUT_FIRST = ("Given the classification task definition and the class labels, generate an input that corresponds "
                "to each of the class labels. If the task doesn't require input, just generate possible class labels."
                "\n\n{examples}\n\nTask: {instruction}\n")
INPUT_FIRST = ("Come up with examples for the following tasks. Try to generate multiple examples when possible. If "
               "the task doesn't require additional input, you can generate the output directly.\n\n{examples}\n\n"
               "Task: {instruction}\n")

# used only when the seed file has no is_classification field (e.g. Alpaca seeds); after the paper's templates
BUILTIN = [
    {"instruction": "Detect if the Reddit thread contains hate speech.", "is_classification": True,
     "input": "Thread: The best way to cook a steak on the grill.", "output": "Not Hate Speech"},
    {"instruction": "Tell me if the following email is a promotion email or not.", "is_classification": True,
     "input": "Email: Check out our amazing new sale! We've got discounts on all of your favorite products.",
     "output": "Promotion"},
    {"instruction": "Classify the sentiment of the sentence into positive, negative, or mixed.", "is_classification": True,
     "input": "Sentence: I had a great day today.", "output": "Positive"},
    {"instruction": "Sort the given list ascendingly.", "is_classification": False,
     "input": "List: [10, 92, 2, 5, -4, 92, 5, 101]", "output": "[-4, 2, 5, 5, 10, 92, 92, 101]"},
    {"instruction": "Converting 85 F to Celsius.", "is_classification": False, "input": "", "output": "85°F = 29.44°C"},
    {"instruction": "Give me an example of a time when you had to use your sense of humor.", "is_classification": False,
     "input": "", "output": "When my friend's cake fell on the floor, I called it the upside-down special."},
]
_EXAMPLE = re.compile(r"Example\s?\d*\.?")
_OUT = re.compile(r"Output\s*\d*\s*:")
_IN = re.compile(r"Input\s*\d*\s*:")


def _shots(seeds: list[dict[str, Any]], k: int = 6) -> list[dict[str, Any]]:
    """Up to k/2 classification and k/2 other seed tasks (deterministic), else the built-in ones."""
    clf = [s for s in seeds if s.get("is_classification") is True]
    gen = [s for s in seeds if s.get("is_classification") is False]
    if len(clf) < 2 or len(gen) < 2:
        return BUILTIN
    return clf[: k // 2] + gen[: k // 2]


def clf_prompt(instruction: str, shots: list[dict[str, Any]]) -> str:
    ex = "\n\n".join(f"Task: {s['instruction']}\nIs it classification? {'Yes' if s['is_classification'] else 'No'}"
                     for s in shots)
    return CLF_PROMPT.format(examples=ex, instruction=instruction.strip())


def parse_is_clf(text: str) -> bool | None:
    """Yes/No first; else a sentence that says it ("The task is not a classification task"); else None."""
    m = re.match(r"[\s*_\"'`]*(yes|no)\b", text, re.I)
    if m:
        return m.group(1).lower() == "yes"
    if re.search(r"\b(?:is\s+not|isn't|not)\s+(?:a\s+|an?\s+\w+\s+)?classification\b", text, re.I):
        return False
    if re.search(r"\bis\s+(?:a\s+|an?\s+\w+\s+)?classification\b", text, re.I):
        return True
    return None


def instance_prompt(instruction: str, is_clf: bool, shots: list[dict[str, Any]]) -> str:
    if is_clf:
        ex = "\n\n".join(f"Task: {s['instruction']}\nClass label: {s['output']}\n{s['input']}".rstrip()
                         for s in shots if s["is_classification"])
        return OUTPUT_FIRST.format(examples=ex, instruction=instruction.strip())
    ex = "\n\n".join(f"Task: {s['instruction']}\n" + (f"Example 1\n{s['input']}\nOutput: {s['output']}" if s["input"]
                                                      else f"Output: {s['output']}")
                     for s in shots if not s["is_classification"])
    return INPUT_FIRST.format(examples=ex, instruction=instruction.strip())


def _input_output(text: str) -> tuple[str, str]:
    """prepare_for_finetuning.parse_input_output: text before "Output:" is the input (less "Input:")."""
    if _OUT.search(text):
        parts = _OUT.split(text)
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", text.strip()
    out = _IN.split(out)[0].strip()  # a second input/output pair glued on
    inp = re.sub(r"^Input\s*\d*\s*:", "", inp).strip()
    if re.fullmatch(r"<\s*no\s*input\s*>|none\.?|n/?a", inp, re.I):
        inp = ""
    return inp, out


def parse_instances(text: str, is_clf: bool) -> list[tuple[str, str]]:
    """``[(input, output)]`` from an output-first (classification) or input-first answer."""
    text = text.strip().split("\nTask:")[0]  # the paper stops at "Task:": a chat teacher goes on to a new task
    if is_clf:
        if "Class label:" not in text:
            return []
        out = []
        for block in text.split("Class label:")[1:]:
            label, _, inp = block.strip().partition("\n")
            out.append((inp.strip(), label.strip()))
        return out
    if _EXAMPLE.search(text):
        return [_input_output(b) for b in _EXAMPLE.split(text) if b.strip()]
    # no marker at all: the prompt allows "generate the output directly" for a task without input, so the
    # text is that output (the paper's parser returns nothing here; small teachers rarely write "Output:")
    return [_input_output(text)] if text.strip() else []


def _instance_drop(rep: Any, why: str, example: Any = None) -> None:
    """An instance-level count (``instances_dropped:*``): an instruction has several instances, so these are
    kept apart from the instruction-level drops, whose sum with ``kept`` is ``parsed``."""
    rep.drop("instances_dropped:" + why.removeprefix("instance_"), example)


def clean_instances(pairs: list[tuple[str, str]], truncated: bool, rep: Any) -> list[tuple[str, str]]:
    """The paper's instance filters, each drop counted."""
    if truncated and pairs:  # cut at the token limit: the last instance is unfinished
        _instance_drop(rep, "truncated_at_max_tokens", pairs[-1][1][-200:])
        pairs = pairs[:-1]
    kept = []
    for inp, out in pairs:
        why = instance_problem(inp, out)
        if why:
            _instance_drop(rep, why, [inp[:100], out[:200]])
            continue
        kept.append((inp, out))
    by_input: dict[str, set[str]] = {}
    for inp, out in kept:
        if inp:
            by_input.setdefault(inp, set()).add(out)
    if any(len(v) > 1 for v in by_input.values()):  # one input, two answers: the task is ill-posed
        for _ in kept:
            _instance_drop(rep, "same_input_different_output", kept[0][0][:100])
        return []
    uniq = list(dict.fromkeys(kept))
    for _ in range(len(kept) - len(uniq)):
        _instance_drop(rep, "duplicate")
    return uniq


def paper_instances(cands: list[tuple[dict, dict]], seeds: list[dict[str, Any]], teacher: Any, rep: Any, cfg: Any,
                    rnd: int, sampling: dict) -> list[tuple[dict, dict]]:
    """Classify each instruction, then ask for its instances output-first or input-first; each candidate
    comes back with its first usable instance and the rest (up to ``cfg.instances_per_task``) in ``more``."""
    if not cands:
        return []
    shots = _shots(seeds)
    clf_res = teacher.generate([GenerateRequest(messages=[{"role": "user", "content": clf_prompt(it["instruction"], shots)}],
                                                temperature=0.0, max_new_tokens=3) for it, _ in cands],
                               desc=f"round {rnd} classification?")
    kinds = []
    for (it, _), r in zip(cands, clf_res):
        v = parse_is_clf(r.texts[0]) if r is not None else None
        if v is None:
            rep.counts["clf_unreadable_as_generation"] += 1  # counted; input-first is the safe default
        kinds.append(bool(v))
        rep.counts["classification_tasks" if v else "generation_tasks"] += 1
    reqs = [GenerateRequest(messages=[{"role": "user", "content": instance_prompt(it["instruction"], k, shots)}],
                            seed=derive_seed(cfg.seed, "instance", rnd, i), **sampling)
            for i, ((it, _), k) in enumerate(zip(cands, kinds))]
    out = []
    for i, ((it, pv), k, res) in enumerate(zip(cands, kinds, teacher.generate(reqs, desc=f"round {rnd} instances"))):
        if res is None:
            rep.drop("teacher_failed")
            continue
        pairs = parse_instances(res.texts[0], k)
        if not pairs:
            rep.drop("parse:instance_" + ("no_class_label" if k else "no_output_field"), res.texts[0][:300])
            continue
        truncated = bool(res.n_tokens) and res.n_tokens[0] >= reqs[i].max_new_tokens
        pairs = clean_instances(pairs, truncated, rep)
        if not pairs:  # the instruction-level drop; why each instance went is in instances_dropped:*
            rep.drop("no_usable_instance", it["instruction"])
            continue
        rng = random.Random(f"{cfg.seed}/{rnd}/{i}/pick")  # the paper keeps a random sample of <= 5 instances
        pairs = rng.sample(pairs, min(len(pairs), cfg.instances_per_task))
        (inp, outp), more = pairs[0], pairs[1:]
        out.append(({"instruction": it["instruction"], "input": inp, "output": outp, "more": more,
                     "is_classification": k}, pv))
    return out
