"""Parsing numbered lists, every self-instruct filter, both prompt styles, bad input via the CLI."""

import json
import subprocess
import sys

import pytest

from helpers import write_seeds
from instructkit.errors import DataError, InstructkitError
from instructkit.config.synth import SelfInstructConfig
from instructkit.synth.filters import InstructionFilter, parse_alpaca_list, parse_task_list
from instructkit.synth.io import load_seed_tasks
from instructkit.synth.self_instruct import self_instruct
from instructkit.synth.teacher import Teacher
from fake_teacher import FakeTeacher


def test_parse_alpaca_list_variants_and_failures():
    text = ("4. Instruction: Give three tips for staying healthy.\n4. Input:\n<noinput>\n4. Output:\nSleep.\n###\n"
            "**5. Instruction:** Classify the sentence.\n**5. Input:** I loved it.\n**5. Output:** Positive\n###\n"
            "6) Instructions: Name a river.\n6) Output: The Nile.\n###\n"
            "7. Instruction: No output here.\n7. Input:\nx\n###\n"
            "8. Instruction: Summarize the given article.\n8. Input:")
    items, fails = parse_alpaca_list(text)
    assert items == [{"instruction": "Give three tips for staying healthy.", "input": "", "output": "Sleep."},
                     {"instruction": "Classify the sentence.", "input": "I loved it.", "output": "Positive"},
                     {"instruction": "Name a river.", "input": "", "output": "The Nile."}]
    assert fails == ["no_output_field", "truncated_last_item"]
    assert parse_alpaca_list("just some prose") == ([], ["no_numbered_items"])


@pytest.mark.parametrize("text, want", [
    # labels inline after text / after "###", as Alpaca's re.split(r"{idx}\.\s+(Instruction|Input|Output):") reads them
    ("5. Instruction: Name a river. 5. Input: <noinput> 5. Output: The Nile. ### 6. Instruction: Add 2 and 3.\n"
     "6. Input:\n<noinput>\n6. Output:\n5",
     [("Name a river.", "", "The Nile."), ("Add 2 and 3.", "", "5")]),
    # plural, upper case, bold, ")" numbering
    ("5. INSTRUCTIONS: Sort the list.\n**5. INPUT:** 3, 1, 2\n5) output: 1, 2, 3", [("Sort the list.", "3, 1, 2", "1, 2, 3")]),
    # SmolLM2's shape: its own (skipped-ahead) number and the plural label, then a complete item
    ("5. Instructions:\n\nName a prime number.\n5. Input:\n<noinput>\n5. Output:\n7", [("Name a prime number.", "", "7")]),
])
def test_parse_alpaca_list_tolerant_shapes(text, want):
    items, fails = parse_alpaca_list(text)
    assert [(i["instruction"], i["input"], i["output"]) for i in items] == want and fails == []


def test_parse_alpaca_list_rejects_incomplete_or_unlabelled():
    # real SmolLM2 replies: an input with no instruction or output, and an instruction with no output (counted)
    assert parse_alpaca_list("4. Instruction:4. Input:\nHere is a tool that lets you run a business") == ([], ["truncated_last_item"])
    assert parse_alpaca_list("5. Instructions:\n\nHow to use a personal financial calculator") == ([], ["truncated_last_item"])
    # unnumbered "output:" in mid-line prose is not a label; an instruction-less item is counted, not kept
    assert parse_alpaca_list("4. Instruction: Say why output: matters here.") == ([], ["truncated_last_item"])
    assert parse_alpaca_list("4. Instruction:\n4. Input:\nx\n4. Output:\ny") == ([], ["empty_instruction"])
    # a real SmolLM2 reply with its own numbering and no Instruction label: no item (self_instruct adds no lead then)
    assert parse_alpaca_list('1. Sentence: "We are goners."\n2. Output:\nWe are goners.') == ([], ["no_numbered_items"])


def test_parse_task_list_and_instance():
    ins, fails = parse_task_list("Task 9: Write a haiku.\nTask 10: Explain gravity.\n11. Name three rivers.\n12.")
    assert ins == ["Write a haiku.", "Explain gravity.", "Name three rivers."] and fails == []


@pytest.mark.parametrize("instruction,inp,reason", [
    ("Hi there.", "", "too_short"),
    ("word " * 151, "", "too_long"),
    ("Draw a picture of a cat in the park.", "", "blacklist"),
    ("Describe this image of the park in detail.", "", "blacklist"),
    ("Go to the store and buy some milk.", "", "blacklist"),
    ("- Write a story about a brave dragon.", "", "starts_with_punctuation"),
    ("Écris une histoire sur un dragon courageux.", "", "starts_non_ascii"),
    ("Summarize the following paragraph in two sentences.", "", "missing_input"),
    ("Give three tips for staying healthy.", "", "exact_duplicate"),
    ("Give three useful tips for staying healthy.", "x", "rouge_l_similar"),
    ("Answer this trivia question about the capital city of the country of France please today now.", "",
     "contaminated_13gram"),
    ("Write a limerick about a cat who loves jazz.", "", None),
])
def test_each_filter(instruction, inp, reason):
    from instructkit.data.tasks.contamination import ngrams
    f = InstructionFilter(blacklist=SelfInstructConfig().blacklist,
                          contamination_index=ngrams("q: answer this trivia question about the capital city of the "
                                                     "country of france please today now."))
    f.add_existing("Give three tips for staying healthy.")
    assert f.check(instruction, inp) == reason


@pytest.mark.parametrize("style", ["alpaca", "paper"])
def test_self_instruct_counts_every_drop_and_records_provenance(tmp_path, style):
    seeds = load_seed_tasks(write_seeds(tmp_path / "s.jsonl"))
    cfg = SelfInstructConfig(seeds="s.jsonl", style=style, num_instructions=15, requests_per_round=3)
    t = Teacher(FakeTeacher(), tmp_path / "cache.jsonl", progress=False)
    items, rep = self_instruct(cfg, t, seeds, cfg.teacher)
    assert len(items) == 15
    drops = {k: v for k, v in rep.counts.items() if k not in ("kept", "parsed")}
    parsed = rep.counts["parsed"]
    # nothing silently lost: every parsed candidate is kept or dropped for a named reason
    assert parsed == rep.counts["kept"] + sum(v for k, v in drops.items() if not k.startswith("parse:")) or style == "paper"
    assert rep.counts["blacklist"] > 0 or style == "paper"
    assert len({it["instruction"] for it in items}) == 15
    p = items[0]["provenance"]
    assert p["teacher"] == "fake-teacher" and p["round"] == 0 and p["style"] == style
    assert len(p["seed_ids"]) == (3 if style == "alpaca" else 6)
    assert items[0]["messages"][0]["role"] == "user" and items[0]["messages"][1]["content"] == items[0]["output"]
    if style == "paper":
        later = [it for it in items if it["provenance"]["round"] > 0]
        assert later and all(len(it["provenance"]["machine_ids"]) == 2 for it in later)


def test_alpaca_json_seeds_and_malformed_seed_files(tmp_path):
    assert len(load_seed_tasks(write_seeds(tmp_path / "a.jsonl", fmt="alpaca"))) == 8
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x", "instances": [{"input": "", "output": "y"}]}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_seed_tasks(tmp_path / "bad.jsonl")
    (tmp_path / "nofield.jsonl").write_text('{"instances": [{"input": "", "output": "y"}]}\n')
    with pytest.raises(DataError, match=r"nofield.jsonl:1: field 'instruction'"):
        load_seed_tasks(tmp_path / "nofield.jsonl")
    (tmp_path / "noout.json").write_text('[{"instruction": "x", "input": ""}]')
    with pytest.raises(DataError, match=r"noout.json:1: field 'output'"):
        load_seed_tasks(tmp_path / "noout.json")


def test_cli_bad_input_is_one_line_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"instruction": 3}\n')
    r = subprocess.run([sys.executable, "-m", "instructkit", "synth", "self-instruct", "--out", str(tmp_path / "o"),
                        "--seeds", str(tmp_path / "bad.jsonl"), "--teacher", "py:fake_teacher:make"],
                       capture_output=True, text=True, env=_env())
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "bad.jsonl:1: field 'instruction'" in r.stderr


def test_garbage_teacher_gives_empty_pool_error_with_counts(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl")
    r = subprocess.run([sys.executable, "-m", "instructkit", "synth", "self-instruct", "--out", str(tmp_path / "o"),
                        "--seeds", str(seeds), "--teacher", "py:fake_teacher:make", "max_rounds=2",
                        "teacher.progress=false"], capture_output=True, text=True, env={**_env(), "FAKE_TEACHER_MODE": "garbage"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "empty pool after filtering" in r.stderr and "parse:unparseable_response" in r.stderr
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["counts"]["parse:unparseable_response"] == 16


def test_too_few_seeds_is_a_clear_error(tmp_path):
    seeds = load_seed_tasks(write_seeds(tmp_path / "s.jsonl"))[:2]
    with pytest.raises(InstructkitError, match="2 seed tasks, but the prompt needs 3"):
        self_instruct(SelfInstructConfig(), Teacher(FakeTeacher(), None, progress=False), seeds, SelfInstructConfig().teacher)


def _env():
    import os
    from pathlib import Path
    here = str(Path(__file__).parent)
    return {**os.environ, "COLUMNS": "500", "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
