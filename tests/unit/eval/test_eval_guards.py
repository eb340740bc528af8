"""Issue #16 items 2 and 5: eval renders exactly as training; context-prefix guard; EOS list; no RNG reseed."""

import pytest
import torch

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import IGNORE_INDEX, Renderer, shipped_templates
from instructkit.lm.api import GenerateRequest, LoglikelihoodRequest
from instructkit.lm.hf import HFModel


@pytest.fixture(scope="module")
def tok():
    from instructkit.models import make_tiny_tokenizer
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    from instructkit.models import make_tiny_model
    return make_tiny_model(tok)


PROMPT = "Premise: the cat is on the mat.\nHypothesis: a cat sits on a mat.\nDoes the premise entail it?"


@pytest.mark.parametrize("template", shipped_templates())
@pytest.mark.parametrize("target", ["yes", "it is not possible to tell", "42"])
def test_eval_context_tokens_equal_training_prompt_tokens(tok, model, template, target):
    """For every shipped template: the tokens rank classification conditions on are exactly the tokens
    training saw before the target, and the scored tokens are the trained target tokens."""
    ids, labels = Renderer(tok, template)(Conversation.from_pairs(PROMPT, target))
    first = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
    lm = HFModel(model, tok, chat_template=template, apply_chat_template=True, progress=False)
    ctx, cont = lm.encode_pair(PROMPT, target)
    assert ctx == ids[:first]
    assert cont == ids[first: first + len(cont)]
    assert all(x != IGNORE_INDEX for x in labels[first: first + len(cont)])
    assert tok.decode(cont).strip() == target


def test_generation_prompt_equals_training_prompt(tok, model):
    """Generation with the training template continues from the same text training put before the target."""
    for template in shipped_templates():
        lm = HFModel(model, tok, chat_template=template, apply_chat_template=True, progress=False)
        text, chat = lm.prompt_of(GenerateRequest(prompt=PROMPT))
        ids, labels = Renderer(tok, template)(Conversation.from_pairs(PROMPT, "yes"))
        first = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
        assert chat and tok(text, add_special_tokens=False)["input_ids"] == ids[:first], template


def test_context_prefix_guard_merged_continuation(tok, model):
    """'Answer: th' + 'e' tokenizes as 'Answer:' + ' the': the old split scored no token (log-prob 0, wins)."""
    lm = HFModel(model, tok, progress=False)
    ctx_ids = tok("Answer: th")["input_ids"]
    whole = tok("Answer: the")["input_ids"]
    assert len(whole) == len(ctx_ids) and whole[:-1] == ctx_ids[:-1]  # the premise: a merge
    ctx, cont = lm.encode_pair("Answer: th", "e")
    assert ctx + cont == whole and cont == whole[-1:]
    res = lm.loglikelihood([LoglikelihoodRequest("Answer: th", "e"), LoglikelihoodRequest("Answer: th", "x")])
    assert res[0].n_tokens >= 1 and res[0].logprob < 0
    assert lm.stats["ll_boundary_merges"] >= 1


def test_generate_stops_at_every_model_eos(tok, model, monkeypatch):
    # the HF generate path (the engine path: tests/unit/eval/test_eval_generation.py)
    lm = HFModel(model, tok, progress=False, generation="hf")
    extra = tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = [extra, tok.eos_token_id]
    assert lm.eos_token_ids() == [extra, tok.eos_token_id]
    seen = {}
    real = model.generate

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    monkeypatch.setattr(model, "generate", spy)
    lm.generate([GenerateRequest(prompt="Hi", max_new_tokens=3)])
    assert seen["eos_token_id"] == [extra, tok.eos_token_id]


def test_seeded_generation_leaves_global_rng_alone(tok, model):
    lm = HFModel(model, tok, progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = lm.generate([GenerateRequest(prompt="Hi", max_new_tokens=4, temperature=1.0, n=2, seed=7)])[0].texts
    assert torch.equal(torch.rand(3), expected)  # the caller's stream is where it was
    b = lm.generate([GenerateRequest(prompt="Hi", max_new_tokens=4, temperature=1.0, n=2, seed=7)])[0].texts
    assert a == b  # and the seed still makes the samples reproducible
