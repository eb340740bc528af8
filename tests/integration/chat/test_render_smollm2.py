"""The masking rules hold with SmolLM2's real tokenizer and its own chat template."""

import pytest

from instructkit.chat import IGNORE_INDEX, Conversation, render

pytestmark = pytest.mark.integration

MULTI = [
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": "7 is prime."},
    {"role": "user", "content": "Another one?"},
    {"role": "assistant", "content": "Eleven (11)."},
]


@pytest.mark.parametrize("template", [None, "chatml", "llama3", "vicuna", "alpaca", "plain"])
def test_identical_to_apply_chat_template(smollm2_tokenizer, template):
    from instructkit.chat import Renderer
    conv = Conversation.from_messages(MULTI)
    ids, _ = render(conv, smollm2_tokenizer, template)
    ref = smollm2_tokenizer.apply_chat_template(conv.to_messages(), tokenize=True,
                                                chat_template=Renderer(smollm2_tokenizer, template).source)
    assert ids == list(ref["input_ids"] if hasattr(ref, "keys") else ref)


def test_all_assistant_turns_and_eos_trained(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the hard case
    ids, labels = render(Conversation.from_messages(MULTI), tok)
    trained = [i for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    assert tok.decode(trained) == "7 is prime.<|im_end|>Eleven (11).<|im_end|>"
    # the default system prompt and both user turns are masked
    assert sum(1 for i in ids if i == tok.eos_token_id) == 5 and trained.count(tok.eos_token_id) == 2
