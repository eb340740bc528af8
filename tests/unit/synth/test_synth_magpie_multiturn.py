"""Magpie's pre-query comes from the tokenizer's own template; multi-turn expansion alternates and counts."""

import json

import pytest

from instructkit.errors import InstructkitError
from instructkit.models.tiny import make_tiny_tokenizer
from instructkit.config.synth import MagpieConfig, MultiTurnConfig
from instructkit.synth.magpie import magpie, pre_query
from instructkit.synth.multiturn import expand, write_sharegpt
from instructkit.synth.teacher import Teacher
from fake_teacher import FakeTeacher

DEFAULT_SYSTEM = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Tiny.<|im_end|>\n{% endif %}"
                  "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                  "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3ISH = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
             "{{ m['content'] }}<|eot_id|>{% endfor %}")


def test_pre_query_from_templates():
    tok = make_tiny_tokenizer()
    assert pre_query(tok) == ("<|im_start|>user\n", "<|im_end|>\n")
    assert pre_query(tok, system="Be brief.")[0] == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    tok.chat_template = DEFAULT_SYSTEM  # a template's default system prompt belongs to the pre-query
    assert pre_query(tok)[0] == "<|im_start|>system\nYou are Tiny.<|im_end|>\n<|im_start|>user\n"
    tok.chat_template = LLAMA3ISH
    pre, post = pre_query(tok)
    assert pre.endswith("<|start_header_id|>user<|end_header_id|>\n\n") and post == "<|eot_id|>"
    tok.chat_template = None
    with pytest.raises(InstructkitError, match="no chat template"):
        pre_query(tok)


class Recorder(FakeTeacher):
    def __init__(self):
        super().__init__()
        self.seen = []

    def answer(self, req):
        self.seen.append(req)
        if req.prompt is not None:  # a magpie instruction sample: sometimes too short, sometimes a repeat
            n = sum(r.prompt is not None for r in self.seen) - 1  # the i-th sample (seeds are hashed)
            return ["Hi", "Write a poem about the sea.", "Write a poem about the sea.", f"List {n} prime numbers please."][n % 4]
        return super().answer(req)


def test_magpie_samples_after_pre_query_and_counts_drops(tmp_path):
    fake = Recorder()
    cfg = MagpieConfig(n=8)
    items, rep = magpie(cfg, Teacher(fake, None, progress=False), make_tiny_tokenizer(), cfg.teacher)
    raw = [r for r in fake.seen if r.prompt is not None]
    assert len(raw) == 8 and all(r.prompt == "<|im_start|>user\n" and r.stop == ["<|im_end|>"] for r in raw)
    assert rep.counts["too_short"] == 2 and rep.counts["exact_duplicate"] == 3 and len(items) == 3
    assert all(it["messages"][1]["role"] == "assistant" for it in items)
    assert rep.extra["pre_query"] == "<|im_start|>user\n"


def test_multiturn_expands_alternating_conversations(tmp_path):
    seeds = [{"id": f"i{k}", "instruction": f"Tell me about the planet number {k}."} for k in range(4)]
    cfg = MultiTurnConfig(instructions="x", turns=3)
    items, rep = expand(cfg, Teacher(FakeTeacher(), None, progress=False), seeds, cfg.teacher)
    assert len(items) == 4
    for it in items:
        roles = [m["role"] for m in it["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) >= 2
        assert not any(m["content"].lower().startswith("user:") for m in it["messages"])  # prefix stripped
    assert sum(v for k, v in rep.counts.items() if k.startswith("conversations_with_")) == 4
    write_sharegpt(tmp_path / "x.json", items)
    from instructkit.data.formats import from_sharegpt
    convs = [from_sharegpt(r) for r in json.loads((tmp_path / "x.json").read_text())]
    assert all(sum(m.trained for m in c.messages) == len(c.messages) // 2 for c in convs)  # loss on every assistant turn
