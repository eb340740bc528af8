"""Start-up probes (packing isolation, LM-head post-processing) and the soft-capped loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from instructkit.errors import ConfigError
from instructkit.train.loss import CausalLMLoss, logit_postprocess
from instructkit.train.packing import Example, collate_packed, make_rows, shift_labels
from instructkit.train.probe import check_model, head_mismatch, packing_leak
from tests.soft_cap import gemma2_soft_capped


class LeakyAttention(torch.nn.Module):
    """A model whose forward always passes a 2-D all-ones mask: transformers then skips the packed-sequence
    detection and packed examples attend to each other (what FA2 with batch > 1 does)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.config = lm.config

    def forward(self, input_ids, position_ids=None, **kw):
        return self.lm(input_ids=input_ids, position_ids=position_ids, attention_mask=torch.ones_like(input_ids),
                       **kw)

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def get_decoder(self):
        return self.lm.get_decoder()


def test_probe_passes_for_a_correct_model(tiny_model):
    found = check_model(tiny_model, packing=True, attn_implementation="sdpa")
    assert found["packing_leak"] < 1e-4 and found["head_mismatch"] < 1e-5


def test_probe_refuses_a_model_whose_packed_examples_attend_to_each_other(tiny_model):
    leaky = LeakyAttention(tiny_model)
    assert packing_leak(leaky) > 1e-3  # the probe statistic sees the leak ...
    with pytest.raises(ConfigError, match="packed examples attend to each other"):
        check_model(leaky, packing=True, attn_implementation="flash_attention_2")
    # ... and it is only checked when packing is on
    check_model(leaky, packing=False, attn_implementation="flash_attention_2")


def test_soft_capped_model_gets_the_models_own_loss(tiny_tokenizer):
    m = gemma2_soft_capped(tiny_tokenizer)
    ids = tiny_tokenizer("the cat sat on the mat and it was one of the water birds")["input_ids"]
    batch = collate_packed(make_rows([Example(ids, shift_labels(ids))], True, 1000), 0)
    with torch.no_grad():
        ours = CausalLMLoss(m, 0)(**batch)
        logits = m(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        keep = batch["labels"][0] != -100
        ref = F.cross_entropy(logits[keep].float(), batch["labels"][0][keep], reduction="sum")
        raw = F.cross_entropy(m.get_output_embeddings()(m.get_decoder()(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"]).last_hidden_state)[0][keep],
            batch["labels"][0][keep], reduction="sum")
    assert abs(raw.item() - ref.item()) > 1.0, "the cap must matter, or this test proves nothing"
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert head_mismatch(m) < 1e-4


def test_probe_refuses_a_head_the_loss_does_not_reproduce(tiny_tokenizer, monkeypatch):
    m = gemma2_soft_capped(tiny_tokenizer)
    import instructkit.models.head as head

    monkeypatch.setattr(head, "_POSTPROCESS", {})  # as if we did not know about soft-capping
    assert logit_postprocess(m)(torch.ones(2)).tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="post-processes logits"):
        check_model(m, packing=False, attn_implementation="eager")
