"""Evol-instruct: lineage, the four elimination rules, failed evolutions back to the pool, round stats."""

import pytest

from instructkit.errors import ConfigError
from instructkit.config.synth import EvolConfig
from instructkit.synth.evol import eliminate_by_prompt, eliminate_by_response, evolve, judge_equal, strip_label_echo
from instructkit.synth.teacher import Teacher
from fake_teacher import FakeTeacher

SEEDS = [{"id": f"s{i}", "instruction": f"Explain topic number {i} about the {w} in simple words."}
         for i, w in enumerate("ocean forest desert city river mountain island valley".split())]


def test_rules():
    # eliminate_by_prompt alone still sees the label as scaffolding; evolve() strips a leading echo first
    assert eliminate_by_prompt("#Rewritten Prompt#: explain x") == "rule4_copies_scaffolding"
    assert eliminate_by_prompt("Rewrite the given prompt so that ...") == "rule4_copies_scaffolding"
    assert eliminate_by_prompt("   ") == "empty_evolution"
    assert eliminate_by_prompt("Explain x with three examples.") is None
    assert eliminate_by_response("Sorry, I can't do that.") == "rule2_short_sorry"
    assert eliminate_by_response("I am sorry " + "word " * 90) is None  # long answers may apologise
    assert eliminate_by_response("The, of and to... !") == "rule3_only_stopwords_punctuation"
    assert eliminate_by_response("?!") == "rule3_only_stopwords_punctuation"
    assert eliminate_by_response("Paris is the capital.") is None
    assert judge_equal("Equal") is True and judge_equal("Not Equal.") is False and judge_equal("Hmm") is None


@pytest.mark.parametrize("raw", ["#Rewritten Prompt#:\nExplain x.", "  **#Rewritten Prompt#:** Explain x.",
                                 "# rewritten  prompt #: Explain x.", "REWRITTEN PROMPT: Explain x.",
                                 "**Rewritten Prompt**:\n\nExplain x.", "The Rewritten Prompt#: Explain x."])
def test_leading_label_echo_is_stripped_then_kept(raw):
    text, stripped = strip_label_echo(raw, "rewritten")
    assert stripped and text == "Explain x." and eliminate_by_prompt(text) is None


def test_label_echo_strip_is_narrow():
    # only the operation's own output label, only at the very start, only with a '#' or ':' marking it as a label
    assert strip_label_echo("#Created Prompt#: Explain x.", "rewritten") == ("#Created Prompt#: Explain x.", False)
    assert strip_label_echo("#Created Prompt#: Explain x.", "created") == ("Explain x.", True)
    assert strip_label_echo("Rewritten prompt engineering tips.", "rewritten")[1] is False
    assert strip_label_echo("Explain x. #Rewritten Prompt#: y", "rewritten")[1] is False
    # scaffolding inside the rewrite still eliminates it after the echo is stripped
    text, stripped = strip_label_echo("#Rewritten Prompt#: Explain x as the given prompt asks.", "rewritten")
    assert stripped and eliminate_by_prompt(text) == "rule4_copies_scaffolding"
    text, stripped = strip_label_echo("#Rewritten Prompt#:\n#Rewritten Prompt#: Explain x.", "rewritten")
    assert stripped and eliminate_by_prompt(text) == "rule4_copies_scaffolding"  # a second label is not an echo
    assert strip_label_echo("#Rewritten Prompt#:", "rewritten") == ("", True) and eliminate_by_prompt("") == "empty_evolution"


class Scripted(FakeTeacher):
    """Evolves s0 fine (after echoing the label), echoes the label and copies scaffolding inside the rewrite for s1,
    judged equal for s2, sorry-answer for s3, stop words for s4."""

    def answer(self, req):
        text = req.messages[-1]["content"]
        if "#Given Prompt#" in text:
            given = text.split("#Given Prompt#:\n", 1)[1].split("\n\n#", 1)[0]
            label = "**#Created Prompt#:**" if "#Created Prompt#" in text else "**#Rewritten Prompt#:**"
            if "number 1 " in given:
                return label + " " + given + " Then restate the given prompt."
            if "number 0 " in given:
                return label + "\n" + given + " Give two examples."
            return given + " Give two examples."
        if "Do you think they are equal" in text:
            return "Equal" if "number 2 " in text else "Not Equal"
        if "number 3 " in text:
            return "Sorry, I cannot."
        if "number 4 " in text:
            return "The and of."
        return "A real answer with content words."


def test_evolve_lineage_elimination_and_pool(tmp_path):
    cfg = EvolConfig(instructions="x", rounds=2)
    items, rep = evolve(cfg, Teacher(Scripted(), tmp_path / "c.jsonl", progress=False), SEEDS[:5], cfg.teacher)
    r1, r2 = rep.rounds
    assert r1["eliminated"] == {"rule4_copies_scaffolding": 1, "rule1_no_information_gain": 1,
                                "rule2_short_sorry": 1, "rule3_only_stopwords_punctuation": 1}
    assert r1["survived"] == 1 and r1["survival"] == pytest.approx(0.2)
    # the leading label echo was stripped (and counted) for s0 and s1 in both rounds; s1 still fails rule 4
    assert r1["stripped_label_echo"] == r2["stripped_label_echo"] == 2 and rep.counts["stripped_label_echo"] == 4
    first = [it for it in items if it["provenance"]["round"] == 1]
    assert [it["provenance"]["parent"] for it in first] == ["s0"]
    second = [it for it in items if it["provenance"]["round"] == 2]
    # round 2 evolves the survivor (its parent is s0's round-1 child) and the failed ones again from the seed
    s0 = [it for it in second if it["provenance"]["root"] == "s0"][0]
    assert s0["provenance"]["parent"] == "s0.r1" and s0["instruction"].endswith("Give two examples. Give two examples.")
    assert sorted(rep.dropped) == ["rule1_no_information_gain", "rule2_short_sorry",
                                   "rule3_only_stopwords_punctuation", "rule4_copies_scaffolding"]
    assert all(it["messages"][-1]["role"] == "assistant" for it in items)
    assert (sum(r["survived"] for r in rep.rounds) == len(items))


def test_evolve_random_ops_report_and_plot(tmp_path):
    from instructkit.synth.io import write_outputs
    cfg = EvolConfig(instructions="x", rounds=3)
    items, rep = evolve(cfg, Teacher(FakeTeacher(), None, progress=False), SEEDS, cfg.teacher)
    ops = {it["provenance"]["op"] for it in items}
    assert len(ops) >= 3 and ops <= set(cfg.ops)
    d = rep.write(tmp_path, [len(it["instruction"].split()) for it in items])
    assert (tmp_path / "rounds.png").stat().st_size > 1000 and (tmp_path / "lengths.png").exists()
    assert "| round |" in (tmp_path / "report.md").read_text() and d["rounds"][0]["evolved"] == len(SEEDS)
    write_outputs(tmp_path, items)


def test_unknown_op_is_config_error():
    cfg = EvolConfig(instructions="x", ops=["deepen", "telepathy"])
    with pytest.raises(ConfigError, match="telepathy"):
        evolve(cfg, Teacher(FakeTeacher(), None, progress=False), SEEDS, cfg.teacher)
