"""Preference readers (pairs, conversational, ranked -> all pairs) and pair rendering (shared prompt tokens)."""

from __future__ import annotations

import json

import pytest

from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.data.preference import load_pairs, read_preferences, render_pair
from instructkit.data.readers import SkipReport
from instructkit.errors import DataError


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_plain_conversational_prefix_and_ranked_records(tmp_path):
    f = _write(tmp_path / "p.jsonl", [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5", "system": "Be exact."},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "assistant", "content": "go away"}]},
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
         "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]},
        {"messages": [{"role": "user", "content": "rank"}], "ranked": ["a", "b", "c"]},
        {"prompt": "score", "completions": ["x", "y", "z"], "scores": [1, 3, 1]},
    ])
    report = SkipReport()
    pairs = list(read_preferences(f, report=report))
    assert [p.meta["line"] for p in pairs] == [1, 2, 3, 4, 4, 4, 5, 5]
    assert [m.role for m in pairs[0].prompt] == ["system", "user"] and pairs[0].chosen[0].content == "4"
    assert [m.content for m in pairs[2].prompt] == ["q"] and pairs[2].rejected[0].content == "bad"
    # ranked best-first: all K(K-1)/2 pairs, better one chosen
    assert [(p.chosen[0].content, p.rejected[0].content) for p in pairs[3:6]] == [("a", "b"), ("a", "c"), ("b", "c")]
    # scores: x and z tie -> no pair, counted
    assert [(p.chosen[0].content, p.rejected[0].content) for p in pairs[6:]] == [("y", "x"), ("y", "z")]
    assert report.counts["tied_pairs"] == 1


def test_bad_records_name_file_line_field_and_skip_counts(tmp_path):
    f = _write(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "chosen": "a", "rejected": "b"},
        {"prompt": "no rejected", "chosen": "a"},
        "{not json",
        {"prompt": "x", "chosen": "", "rejected": "b"},
        {"prompt": "same", "chosen": "a", "rejected": "a"},
        {"prompt": "r", "completions": ["a", "b"], "scores": [1]},
    ])
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'rejected': missing"):
        list(read_preferences(f))
    report = SkipReport()
    assert len(list(read_preferences(f, on_error="skip", report=report))) == 1
    assert dict(report.counts) == {"missing_field": 1, "invalid_json": 1, "empty_assistant": 1, "identical": 1,
                                   "wrong_type": 1}
    assert any("bad.jsonl:4: field 'chosen'" in e for e in report.examples["empty_assistant"])


def test_prompt_tokens_identical_and_final_eos_trained(tmp_path, tiny_tokenizer):
    assert tiny_tokenizer.pad_token_id == tiny_tokenizer.eos_token_id  # SmolLM2's trap
    f = _write(tmp_path / "p.jsonl", [{"prompt": "What is one plus two?", "chosen": "Three.",
                                       "rejected": "It is a long story about the number five and more."}])
    (pair,), report, _ = load_pairs([str(f)], tiny_tokenizer, template=None, max_length=None, on_error="raise")
    n = pair.prompt_len
    assert n > 0 and pair.chosen_ids[:n] == pair.rejected_ids[:n]
    assert all(x == IGNORE_INDEX for x in pair.chosen_labels[:n] + pair.rejected_labels[:n])
    eos = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    for ids, labels in ((pair.chosen_ids, pair.chosen_labels), (pair.rejected_ids, pair.rejected_labels)):
        last = max(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
        assert ids[last] == eos and labels[last] == eos  # the final <|im_end|> counts although pad == eos
        assert labels[n:last + 1] == ids[n:last + 1]


def test_prompt_mismatch_stops_with_a_token_diff(tiny_tokenizer):
    # a template whose generation prompt ends inside a word: "T" + "he ..." merges into one token "The"
    tmpl = ("{% for m in messages %}{% if m.role == 'user' %}Q {{ m.content }}\n{% else %}T{{ m.content }}"
            "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}T{% endif %}")
    from instructkit.data.preference import PreferencePair
    from instructkit.chat.conversation import Message
    pair = PreferencePair([Message("user", "say it")], [Message("assistant", "he cat")],
                          [Message("assistant", " dog")], {"source": "f.jsonl", "line": 7})
    with pytest.raises(DataError, match=r"f.jsonl:7: field 'prompt': chosen and rejected do not share the "
                                        r"prompt's tokens \(first difference at token"):
        render_pair(Renderer(tiny_tokenizer, tmpl), pair)
