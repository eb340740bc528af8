"""DPO family: losses on packed pairs against values computed by hand from per-sequence forwards."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from instructkit.chat.conversation import Message
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.data.preference import PreferencePair, render_pair
from instructkit.models import make_tiny_model
from instructkit.train.preference.batches import attach_reference, collate_pairs, pair_rows
from instructkit.train.preference.losses import PrefParams
from instructkit.train.preference.objectives import DPOLoss
from instructkit.train.preference.refcache import compute_reference

PAIRS = [("What is two plus two?", "Four.", "Five, I think, or maybe six."),
         ("Name a color.", "Blue is a color.", "No."),
         ("Say yes.", "yes", "I will not say that word today.")]


@pytest.fixture()
def rendered(tiny_tokenizer):
    r = Renderer(tiny_tokenizer)
    return [render_pair(r, PreferencePair([Message("user", p)], [Message("assistant", c)],
                                          [Message("assistant", x)])) for p, c, x in PAIRS]


def _by_hand(lm, ids, labels):
    """Sum of log p(token) over the trained tokens of ONE unpacked sequence, and their count."""
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), -1)
    total, n = 0.0, 0
    for t in range(1, len(ids)):
        if labels[t] != IGNORE_INDEX:
            total += float(logp[t - 1, ids[t]])
            n += 1
    return total, n


HAND = {
    "sigmoid": lambda pc, pr, rc, rr, nc, nr, b: -math.log(1 / (1 + math.exp(-b * ((pc - rc) - (pr - rr))))),
    "ipo": lambda pc, pr, rc, rr, nc, nr, b: ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * b)) ** 2,
    "simpo": lambda pc, pr, rc, rr, nc, nr, b: -math.log(1 / (1 + math.exp(-(b * pc / nc - b * pr / nr - 0.5)))),
    "orpo": lambda pc, pr, rc, rr, nc, nr, b: -pc / nc - b * math.log(1 / (1 + math.exp(-(
        (pc / nc - math.log(1 - math.exp(pc / nc))) - (pr / nr - math.log(1 - math.exp(pr / nr))))))),
}


@pytest.mark.parametrize("loss", sorted(HAND))
def test_packed_loss_matches_hand_computed(loss, rendered, tiny_tokenizer):
    policy = make_tiny_model(tiny_tokenizer, seed=0, attn_implementation="sdpa")
    reference = make_tiny_model(tiny_tokenizer, seed=1)  # a different model, so the log-ratios are not zero
    rows = pair_rows(rendered, packing=True, pack_tokens=1024)
    assert len(rows) == 1  # all three pairs (six sequences) share one padding-free row
    ref = compute_reference(reference, rows, len(rendered), "cpu")
    attach_reference(rows, ref)
    beta = 0.1
    wrapper = DPOLoss(policy, loss, PrefParams(beta=beta), chunk=7)  # chunked head, as in training
    got = wrapper(**collate_pairs(rows)).item()
    want = 0.0
    for p in rendered:
        pc, nc = _by_hand(policy, p.chosen_ids, p.chosen_labels)
        pr, nr = _by_hand(policy, p.rejected_ids, p.rejected_labels)
        rc, _ = _by_hand(reference, p.chosen_ids, p.chosen_labels)
        rr, _ = _by_hand(reference, p.rejected_ids, p.rejected_labels)
        want += HAND[loss](pc, pr, rc, rr, nc, nr, beta)
    assert got == pytest.approx(want, rel=1e-4)


def test_policy_equal_to_reference_gives_log2_and_gradients_flow(rendered, tiny_tokenizer):
    lm = make_tiny_model(tiny_tokenizer)
    rows = pair_rows(rendered, packing=False, pack_tokens=1024)
    assert len(rows) == 3  # packing off: one pair per row, chosen + rejected still together
    attach_reference(rows, compute_reference(lm, rows, 3, "cpu"))
    wrapper = DPOLoss(lm, "sigmoid", PrefParams(beta=0.1))
    lm.train()
    loss = wrapper(**collate_pairs(rows))
    assert loss.item() == pytest.approx(3 * math.log(2), abs=1e-5)
    loss.backward()
    assert lm.model.embed_tokens.weight.grad.abs().sum() > 0
    m = wrapper.pop_metrics(lambda x: x)
    assert m["reward_margin"] == pytest.approx(0, abs=1e-5) and m["kl_proxy"] == pytest.approx(0, abs=1e-5)
    assert m["logps_chosen"] < 0 and m["logps_rejected"] < m["logps_chosen"]  # longer rejected answers


def test_falling_chosen_logprob_warns_once(caplog, tiny_tokenizer):
    w = DPOLoss(make_tiny_model(tiny_tokenizer), "sigmoid", PrefParams(), falling_window=3)
    with caplog.at_level("WARNING", logger="instructkit.train"):
        for v in (-10.0, -9.0, -11.0, -12.0, -11.5, -12.5, -13.0):  # never 3 falls in a row
            w.on_train_metrics({"logps_chosen": v})
        assert not w.warned
        w.on_train_metrics({"logps_chosen": -14.0})  # -11.5 > -12.5 > -13 > -14
        w.on_train_metrics({"logps_chosen": -15.0})
    assert w.warned and sum("chosen log-prob fell" in r.message for r in caplog.records) == 1


def test_reference_pass_is_split_across_ranks_on_the_model_device(rendered, tiny_tokenizer):
    """Each of 2 ranks computes the reference of its own rows (rows rank::2) on accelerator.device; the
    sum-reduce of the two equals one process computing all rows. Under FSDP every rank runs as many
    forwards as the busiest one (the sharded forward is a collective)."""
    import types

    from instructkit.train.preference import refcache

    lm = make_tiny_model(tiny_tokenizer, seed=1)
    rows = pair_rows(rendered, packing=False, pack_tokens=1024)  # 3 rows, one pair each
    whole = compute_reference(lm, rows, 3, "cpu")
    parts, forwards = [], []
    for rank, kind in ((0, "MULTI_CPU"), (1, "MULTI_CPU"), (1, "FSDP")):
        seen = []
        acc = types.SimpleNamespace(process_index=rank, num_processes=2, device=torch.device("cpu"),
                                    distributed_type=f"DistributedType.{kind}",
                                    unwrap_model=lambda w, **k: w, reduce=lambda x, op: seen.append(x) or x,
                                    autocast=contextlib.nullcontext)
        # the training wrapper (a Module holding the model as .lm); under FSDP its root forward runs the pass
        wrapper = torch.nn.Module()
        wrapper.lm = lm
        before = refcache.FORWARDS
        parts.append(refcache.sharded_reference(acc, wrapper, rows, 3))
        forwards.append(refcache.FORWARDS - before)
        if kind != "FSDP":
            assert seen and seen[0].device.type == "cpu"  # computed where the model is, reduced once
    assert forwards[:2] == [2, 1]  # rows 0, 2 on rank 0; row 1 on rank 1
    torch.testing.assert_close(parts[0] + parts[1], whole)
    assert not torch.equal(parts[0], whole) and not torch.equal(parts[1], whole)
    assert forwards[2] == 2  # FSDP: rank 1 pads to rank 0's two forwards (the extra one is dropped)
    torch.testing.assert_close(parts[2], parts[1])
