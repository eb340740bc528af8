"""ShareGPT cleaning on a crafted file: every drop counted by reason, HTML converted, token-exact splitting."""

import json

import pytest

from instructkit.models.tiny import make_tiny_tokenizer
from instructkit.config.synth import CleanConfig
from instructkit.synth.sharegpt import Splitter, clean, count_template_tokens, iter_records
from instructkit.synth.report import RunReport

LONG = " ".join(f"The hero walked to village number {i} and met a friendly baker there." for i in range(30))


def conv(cid, *turns, system=None):
    d = {"id": cid, "conversations": [{"from": f, "value": v} for f, v in turns]}
    if system:
        d["system"] = system
    return d


RECORDS = [
    conv("ok", ("human", "What is the capital of France?"), ("gpt", "Paris is the capital of France.")),
    conv("html", ("human", "Format a list for me"), ("gpt", "<div><p>Here:</p><ul><li>one</li><li>two</li></ul></div>")),
    conv("dup", ("human", "What is the capital of France?"), ("gpt", "Paris is the capital of France.")),
    conv("near", ("human", "Tell me a long story " + LONG), ("gpt", "Sure, the story goes " + LONG)),
    conv("near2", ("human", "Tell me a long story " + LONG), ("gpt", "Sure, the story goes " + LONG + " the end")),
    conv("lead", ("gpt", "Hello! How can I help?"), ("human", "Name a colour of the sky please."), ("gpt", "Blue.")),
    conv("trail", ("human", "Name a fruit that is yellow."), ("gpt", "A banana."), ("human", "And red?")),
    conv("empty", ("human", "Hi"), ("gpt", "")),
    conv("alt", ("human", "First question here"), ("human", "Second question"), ("gpt", "Answer")),
    conv("role", ("human", "x"), ("robot", "y")),
    {"id": "broken", "items": []},
    conv("only_user", ("human", "Anyone there?")),
    conv("fr", ("human", "Bonjour, pouvez-vous m'expliquer comment fonctionne la photosynthèse des plantes vertes ?"),
         ("gpt", "Bien sûr. La photosynthèse est le processus par lequel les plantes utilisent la lumière du soleil.")),
    conv("long", *[(r, f"Turn {k}: " + " ".join(["Please explain how the weather changes during summer."] * 6))
                   for k in range(6)
                   for r in ("human", "gpt")], system="Be concise."),
]


@pytest.fixture
def sharegpt_file(tmp_path):
    text = json.dumps(RECORDS, indent=1)
    p = tmp_path / "sg.json"
    p.write_text(text + ',\n {"id": "cut", "conversations": [{"from": "human", "val')  # truncated like the real dump
    p.write_text(text[:-1].rstrip() + ',\n {"id": "cut", "conversations": [{"from": "human", "val')
    return p


def test_truncated_json_is_decoded_incrementally(sharegpt_file):
    counts = {}
    recs = list(iter_records(sharegpt_file, counts))
    assert len(recs) == len(RECORDS) and counts == {"truncated_tail": 1}


def test_clean_counts_every_drop(sharegpt_file, tmp_path):
    cfg = CleanConfig(input=str(sharegpt_file), max_tokens=400, languages=["en"])
    items, rep = clean(cfg, make_tiny_tokenizer(), progress=False)
    c = rep.counts
    assert c["read"] == len(RECORDS) and c["truncated_tail"] == 1
    assert c["exact_duplicate"] == 1 and c["near_duplicate"] == 1
    assert c["empty_message"] == 1 and c["non_alternating"] == 1 and c["broken_or_unknown_role"] == 1
    assert c["broken_record"] == 1 and c["empty_conversation"] == 1 and c["language:fr"] == 1
    assert c["trimmed_leading_assistant"] == 1 and c["trimmed_trailing_user"] == 2
    assert c["html_converted_messages"] == 1 and c["split_conversations"] == 1  # long (near loses its only pair)
    ids = [it["id"] for it in items]
    # 'near' alone is longer than max_tokens: its only turn pair is dropped, so the conversation is gone (counted)
    assert c["turn_pairs_longer_than_max_tokens"] == 1
    assert c["all_turn_pairs_longer_than_max_tokens"] == 1
    assert ids[:4] == ["ok", "html", "lead", "trail"] and all(i.startswith("long_") for i in ids[4:])
    html = items[1]["messages"][1]["content"]
    assert "<div>" not in html and "* one" in html
    tok = make_tiny_tokenizer()
    pieces = [it for it in items if it["id"].startswith("long_")]
    assert len(pieces) >= 2
    for it in pieces:  # every piece fits, keeps the system prompt, starts with the user and alternates
        assert it["messages"][0] == {"role": "system", "content": "Be concise."}
        assert count_template_tokens(tok, it["messages"]) <= 400
        assert [m["role"] for m in it["messages"][1:]] == ["user", "assistant"] * ((len(it["messages"]) - 1) // 2)
    assert sum(len(it["messages"]) - 1 for it in pieces) == 12  # no turn lost in splitting
    # nothing silently lost: read = kept conversations + drops (conversation ledger), pieces counted apart
    led = rep.extra["ledger"]
    assert led["conversations"]["balanced"] and c["kept"] == 5 and c["pieces_written"] == len(items)
    assert c["read"] == c["kept"] + sum(led["conversations"]["dropped"].values())


def test_turn_pair_longer_than_limit_is_dropped_and_counted():
    tok = make_tiny_tokenizer()
    rep = RunReport("t")
    conv_ = {"id": "x", "system": None, "messages": [{"role": "user", "content": "short q"}, {"role": "assistant", "content": "a"},
                                                     {"role": "user", "content": LONG}, {"role": "assistant", "content": LONG}]}
    out = Splitter(tok, 60).split(conv_, rep)
    assert [len(p["messages"]) for p in out] == [2] and rep.counts["turn_pairs_longer_than_max_tokens"] == 1
