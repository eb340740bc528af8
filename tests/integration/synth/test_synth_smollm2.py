"""The real embedded model as teacher: Magpie's pre-query from SmolLM2's own template, and a self-instruct
round whose every parsed item is kept or dropped for a named reason. Tiny budgets (few, short requests)."""

import pytest

from instructkit.lm.hf import HFModel
from instructkit.config.synth import MagpieConfig, SelfInstructConfig, TeacherConfig
from instructkit.synth.magpie import magpie, pre_query
from instructkit.synth.self_instruct import self_instruct
from instructkit.synth.teacher import Teacher

pytestmark = pytest.mark.integration


def test_magpie_generates_instructions_with_smollm2(smollm2_model, smollm2_tokenizer, tmp_path):
    pre, post = pre_query(smollm2_tokenizer)
    # SmolLM2's template writes a default system prompt: it is part of the pre-query
    assert pre.startswith("<|im_start|>system\n") and pre.endswith("<|im_start|>user\n") and post.startswith("<|im_end|>")
    lm = HFModel(smollm2_model, smollm2_tokenizer, batch_size=4, progress=False)
    t = Teacher(lm, tmp_path / "cache.jsonl", progress=False)
    cfg = MagpieConfig(n=4, respond=False, min_words=2, teacher=TeacherConfig(max_new_tokens=24, temperature=1.0))
    items, rep = magpie(cfg, t, smollm2_tokenizer, cfg.teacher)
    assert rep.counts["kept"] + sum(v for k, v in rep.counts.items() if k != "kept") == 4
    assert items, dict(rep.counts)
    assert all(it["instruction"] and "<|im_" not in it["instruction"] for it in items)
    # the second run is answered from the cache
    t2 = Teacher(lm, tmp_path / "cache.jsonl", progress=False)
    magpie(cfg, t2, smollm2_tokenizer, cfg.teacher)
    assert t2.usage["sent"] == 0 and t2.usage["cache_hits"] == 4


def test_self_instruct_round_with_smollm2(smollm2_model, smollm2_tokenizer, tmp_path):
    from helpers import write_seeds
    from instructkit.synth.io import load_seed_tasks
    seeds = load_seed_tasks(write_seeds(tmp_path / "s.jsonl"))
    lm = HFModel(smollm2_model, smollm2_tokenizer, batch_size=2, progress=False)
    cfg = SelfInstructConfig(seeds="s.jsonl", num_instructions=5, requests_per_round=1, max_rounds=1,
                             teacher=TeacherConfig(max_new_tokens=64))
    items, rep = self_instruct(cfg, Teacher(lm, None, progress=False), seeds, cfg.teacher)
    c = rep.counts
    drops = sum(v for k, v in c.items() if k not in ("kept", "parsed") and not k.startswith("parse:"))
    assert c["parsed"] == c["kept"] + drops  # nothing lost between parsing and the filters
    assert c["parsed"] + sum(v for k, v in c.items() if k.startswith("parse:")) >= 1  # the response is accounted for
    assert len(items) == c["kept"]
