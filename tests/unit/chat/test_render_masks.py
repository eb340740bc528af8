"""Loss masks live in rendering: these tests pin what is trained (tiny tokenizer, every template)."""

from __future__ import annotations

import pytest

from instructkit.chat import IGNORE_INDEX, Conversation, Message, Renderer, render
from instructkit.chat.render import shipped_templates
from instructkit.errors import DataError, InstructkitError

MULTI = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "Four."},
    {"role": "user", "content": "And three plus three?"},
    {"role": "assistant", "content": "Six, since 3 + 3 = 6."},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome."},
]


def trained_text(tok, ids, labels):
    return tok.decode([i for i, l in zip(ids, labels) if l != IGNORE_INDEX])


def trained_runs(labels):
    """Maximal runs of consecutive trained positions."""
    runs, start = [], None
    for i, l in enumerate(labels + [IGNORE_INDEX]):
        if l != IGNORE_INDEX and start is None:
            start = i
        elif l == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.parametrize("template", [None] + shipped_templates())
def test_tokens_identical_to_apply_chat_template(tiny_tokenizer, template):
    conv = Conversation.from_messages(MULTI)
    ids, labels = render(conv, tiny_tokenizer, template)
    src = Renderer(tiny_tokenizer, template).source
    ref = tiny_tokenizer.apply_chat_template(conv.to_messages(), chat_template=src, tokenize=True)
    ref = ref["input_ids"] if hasattr(ref, "keys") else ref
    assert ids == list(ref)
    assert len(labels) == len(ids)


@pytest.mark.parametrize("template", ["chatml", "llama3", "vicuna", "alpaca"])
def test_every_assistant_turn_trained_and_nothing_else(tiny_tokenizer, template):
    conv = Conversation.from_messages(MULTI)
    ids, labels = render(conv, tiny_tokenizer, template)
    runs = trained_runs(labels)
    # one trained run per assistant turn: the Axolotl "only the last turn" bug is impossible
    assert len(runs) == 3
    for (s, e), msg in zip(runs, conv.turns("assistant")):
        text = tiny_tokenizer.decode(ids[s:e])
        # (vicuna: the generation prompt is "ASSISTANT:", so the leading space is part of the answer)
        assert text.lstrip().startswith(msg.content), (text, msg.content)
        # the end-of-turn marker is part of what is learned
        assert text.lstrip()[len(msg.content):].strip() in {"<|im_end|>", "<|eot_id|>"}
    # no user/system text leaks into the trained tokens
    got = trained_text(tiny_tokenizer, ids, labels)
    for m in conv.messages:
        if m.role != "assistant":
            assert m.content not in got


def test_eos_trained_when_pad_equals_eos(tiny_tokenizer):
    assert tiny_tokenizer.pad_token_id == tiny_tokenizer.eos_token_id
    ids, labels = render(Conversation.from_pairs("Say hi.", "Hi."), tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    eos_positions = [i for i, t in enumerate(ids) if t == eos]
    # the assistant's <|im_end|> is trained; the user's one is not
    assert [labels[i] == eos for i in eos_positions] == [False, True]


def test_tool_turns_and_per_message_override(tiny_tokenizer):
    conv = Conversation([
        Message("user", "What is 17 times 23?"),
        Message("assistant", "CALL calculator(17*23)"),
        Message("tool", "391", name="calculator"),
        Message("assistant", "17 times 23 is 391."),
    ]).validate()
    ids, labels = render(conv, tiny_tokenizer)
    got = trained_text(tiny_tokenizer, ids, labels)
    assert "CALL calculator(17*23)" in got and "17 times 23 is 391." in got and "391<" not in got.split("391.")[0][-5:]
    conv.messages[1].train = False  # e.g. do not learn a failed call
    _, labels2 = render(conv, tiny_tokenizer)
    assert len(trained_runs(labels2)) == 1


def test_truncation_reported_and_empty_target_raises(tiny_tokenizer):
    r = Renderer(tiny_tokenizer, max_length=12)
    long_prompt = Conversation.from_pairs("word " * 50, "short answer")
    with pytest.raises(DataError) as e:
        r(long_prompt)
    assert e.value.reason == "no_trained_tokens" and "max_length=12" in str(e.value)
    assert r.stats["no_trained_tokens"] == 1
    r2 = Renderer(tiny_tokenizer, max_length=30)
    out = r2(Conversation.from_pairs("Hello", "word " * 50))
    assert out.truncated and len(out.input_ids) == 30 and out.n_trained > 0
    assert r2.stats["truncated"] == 1


def test_render_batch_matches_single_and_returns_errors_in_place(tiny_tokenizer):
    r = Renderer(tiny_tokenizer, max_length=16)
    convs = [Conversation.from_pairs("Hi there", "Hello to you."), Conversation.from_pairs("word " * 40, "x"),
             Conversation.from_pairs("a", "b")]
    out = r.render_batch(convs)
    assert isinstance(out[1], DataError)
    for c, o in zip([convs[0], convs[2]], [out[0], out[2]]):
        single = Renderer(tiny_tokenizer, max_length=16)(c)
        assert (o.input_ids, o.labels) == (single.input_ids, single.labels)


def test_non_prefix_stable_template_is_an_error(tiny_tokenizer):
    # a template that renders a running turn count into the system prompt changes earlier text
    bad = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InstructkitError, match="prefix-stable"):
        render(Conversation.from_messages(MULTI[1:3]), tiny_tokenizer, bad)


def test_unknown_template_and_missing_template(tiny_tokenizer):
    with pytest.raises(InstructkitError, match="unknown chat template"):
        render(Conversation.from_pairs("a", "b"), tiny_tokenizer, "no-such-template")
    tok = type(tiny_tokenizer).from_pretrained  # noqa: F841  (tokenizers without a template:)
    class NoTemplate:
        chat_template = None
    with pytest.raises(InstructkitError, match="no chat_template"):
        Renderer(NoTemplate())
