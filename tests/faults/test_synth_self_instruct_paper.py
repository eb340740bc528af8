"""Issue #24 item 12: self-instruct drops truncated, degenerate and repetitive instances (counted); `style: paper`
detects classification tasks, writes their instances output-first, and shuffles the machine tasks in."""

import random
import sys
from pathlib import Path

from instructkit.config.synth import SelfInstructConfig
from instructkit.lm.api import GenerateResult
from instructkit.synth.self_instruct import self_instruct
from instructkit.synth.teacher import Teacher

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synth_fakes, whatever pytest's import mode
from synth_fakes import Recording  # noqa: E402

SEEDS = [{"id": f"s{i}", "instruction": ins, "input": inp, "output": out, "is_classification": clf}
         for i, (ins, inp, out, clf) in enumerate([
             ("Give three tips for staying healthy.", "", "Eat well, sleep, move.", False),
             ("Classify the sentiment of the sentence.", "I loved it.", "Positive", True),
             ("Translate the sentence into French.", "Good morning.", "Bonjour.", False),
             ("Is the email spam or not spam?", "Win a free cruise now!", "Spam", True),
             ("Write a haiku about autumn leaves falling.", "", "Red leaves drift...", False),
             ("Tell me whether the number is odd or even.", "7", "Odd", True),
             ("Suggest a name for a coffee shop near the sea.", "", "Tidal Brew", False),
             ("Summarize the paragraph in one sentence.", "Cats sleep a lot.", "Cats sleep.", False)])]
WORDS = ("river mountain algorithm poem budget recipe garden planet violin market theorem castle engine novel protein "
         "satellite festival contract glacier museum harbor orchard circuit journal lantern meadow").split()


class Alpaca:
    """One Alpaca-style answer: a fine item, input '[', a repetition loop, and a last item cut at the limit."""

    name = "alpaca-teacher"

    def generate(self, reqs):
        text = ("Describe the water cycle to a ten year old child.\n4. Input:\n<noinput>\n4. Output:\nWater evaporates, "
                "forms clouds and falls as rain.\n###\n5. Instruction: Sort the numbers in the list from small to large."
                "\n5. Input:\n[\n5. Output:\n1, 2, 3\n###\n6. Instruction: Write a short chant for a football team fan."
                "\n6. Input:\n<noinput>\n6. Output:\n" + "Go team go! " * 12 + "\n###\n7. Instruction: Explain how a "
                "rainbow forms after a summer storm.\n7. Input:\n<noinput>\n7. Output:\nSunlight enters raindrops and")
        return [GenerateResult([text], [r.max_new_tokens]) for r in reqs]  # every answer hit max_new_tokens


def test_truncated_degenerate_and_repetitive_instances_are_dropped_and_counted():
    cfg = SelfInstructConfig(num_instructions=50, requests_per_round=1, max_rounds=1, num_prompt_seeds=3)
    items, rep = self_instruct(cfg, Teacher(Alpaca(), None, progress=False), SEEDS, cfg.teacher)
    assert [it["instruction"] for it in items] == ["Describe the water cycle to a ten year old child."]
    c = rep.counts
    assert c["instance_truncated_at_max_tokens"] == 1 and c["instance_degenerate_no_text"] == 1
    assert c["instance_repetitive"] == 1


class Paper(Recording):
    """Task lists with one classification and one generation task per request; answers per prompt kind."""

    def answer(self, req):
        text = req.messages[-1]["content"]
        r = random.Random(f"{text}|{req.seed}")
        if "Continue the list" in text:
            w = r.sample(WORDS, 6)
            return (f"Task 9: Classify the {w[0]} review about the {w[1]} as positive or negative.\n"
                    f"Task 10: Write a short story about a {w[2]}, a {w[3]} and a {w[4]} in {w[5]} land.")
        if text.rstrip().endswith("Is it classification?"):
            task = text.rsplit("Task: ", 1)[1]
            return "Yes" if task.startswith("Classify") else "No"
        if text.startswith("Given the classification task definition"):
            return "Class label: Positive\nReview: I loved every minute.\nClass label: Negative\nReview: Dull and slow."
        if text.startswith("Come up with examples for the following tasks"):
            return "Example 1\nOutput: Once upon a time a river met a mountain.\n\nTask: Something else\nOutput: x"
        return super().answer(req)


def test_paper_style_classifies_and_generates_output_first():
    fake = Paper()
    cfg = SelfInstructConfig(style="paper", num_instructions=12, requests_per_round=4, max_rounds=4)
    items, rep = self_instruct(cfg, Teacher(fake, None, progress=False), SEEDS, cfg.teacher)
    clf = [it for it in items if it["instruction"].startswith("Classify")]
    gen = [it for it in items if it["instruction"].startswith("Write a short story")]
    assert clf and gen
    assert all(it["output"] in ("Positive", "Negative") and it["input"].startswith("Review:") for it in clf)
    assert all(it["provenance"]["is_classification"] for it in clf)
    assert all(it["output"].startswith("Once upon a time") and not it["provenance"]["is_classification"] for it in gen)
    assert rep.counts["classification_tasks"] > 0 and rep.counts["generation_tasks"] > 0
    # exact instruction ledger: parsed = kept + instruction-level drops (instance-level counts kept apart)
    c = rep.counts
    assert c["parsed"] == c["kept"] + sum(c[k] for k in rep.dropped if not k.startswith("instances_dropped:")
                                          and k not in ("parse:empty_response", "parse:empty_instruction"))
    prompts = [r.messages[-1]["content"] for r in fake.requests]
    assert any(p.startswith("Given the classification task definition") for p in prompts)
    # the 2 machine tasks are shuffled among the 6 seeds, not always the last two lines
    seeds = {s["instruction"] for s in SEEDS}
    positions = []
    for p in prompts:
        if "Continue the list" in p:
            lines = [x.split(": ", 1)[1] for x in p.splitlines() if x.startswith("Task ") and ": " in x]
            if len(lines) == 8:
                positions += [k for k, x in enumerate(lines) if x not in seeds]
    assert positions and min(positions) < 6


def test_paper_style_keeps_several_instances_when_asked():
    fake = Paper()
    cfg = SelfInstructConfig(style="paper", num_instructions=4, requests_per_round=2, max_rounds=2,
                             instances_per_task=2)
    items, rep = self_instruct(cfg, Teacher(fake, None, progress=False), SEEDS, cfg.teacher)
    clf = [it for it in items if it["instruction"].startswith("Classify")]
    by_task = {}
    for it in clf:
        by_task.setdefault(it["instruction"], set()).add(it["output"])
    assert by_task and all(v == {"Positive", "Negative"} for v in by_task.values())
    assert rep.counts["extra_instances"] == len(items) - rep.counts["kept"]


def test_paper_parsers_read_small_teacher_answers():
    from instructkit.synth.self_instruct_paper import parse_instances, parse_is_clf

    assert [parse_is_clf(t) for t in ("Yes", "no.", "The task is not a classification task.",
                                      "This task is a classification task.", "Task: Is it?")] == [True, False, False,
                                                                                                   True, None]
    assert parse_instances("Class label: Spam\nEmail: Win now!\nClass label: Not spam\nEmail: Lunch at 1?\n\n"
                           "Task: another one", True) == [("Email: Win now!", "Spam"), ("Email: Lunch at 1?", "Not spam")]
    assert parse_instances("Example 1\nList: [3, 1]\nOutput: [1, 3]\nExample 2\nInput: [2, 9, 4]\nOutput: [2, 4, 9]",
                           False) == [("List: [3, 1]", "[1, 3]"), ("[2, 9, 4]", "[2, 4, 9]")]
    assert parse_instances("print(random.randint(1, 100))", False) == [("", "print(random.randint(1, 100))")]
