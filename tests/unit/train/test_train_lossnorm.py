"""Loss normalisation: grad-accum 4 x micro-batch 2 must give the update of one batch of 8."""

from __future__ import annotations

import random

import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.models import make_tiny_model
from instructkit.train import train
from instructkit.train.loss import CausalLMLoss
from instructkit.train.packing import collate_padded, make_rows, to_examples


def _records(tok, seed=0):
    rng = random.Random(seed)
    words = "the a of to and in is it you that he was for on are with".split()
    recs = []
    for i in range(8):  # very different lengths AND trained-token counts
        n = [4, 120, 9, 60, 3, 200, 15, 90][i]
        ids = tok(" ".join(rng.choices(words, k=n)))["input_ids"]
        k = len(ids) // (2 if i % 2 else 4)
        recs.append({"input_ids": ids, "labels": [-100] * k + ids[k:]})
    return recs


def _one_step(tmp_path, tok, recs, name, micro, accum, packing=False):
    # adamw with a huge eps makes the first update ~ lr * grad (scale-sensitive; plain Adam's first step is
    # ~ lr * sign(grad) and would hide a wrong normalisation); no clipping, no shuffling effects (1 step = all)
    r = load_config(Recipe, None, [f"output_dir={tmp_path / name}", "train.max_steps=1", f"train.packing={str(packing).lower()}",
                                   f"train.micro_batch_size={micro}", f"train.grad_accum={accum}", "train.lr=1.0",
                                   "train.eps=1.0", "train.max_grad_norm=0", "train.scheduler=constant",
                                   "train.warmup_ratio=0", "train.progress=false", "train.tensorboard=false",
                                   "data.max_length=512", "train.pack_tokens=512"])
    res = train(r, examples=recs, model=make_tiny_model(tok), tokenizer=tok)
    return torch.cat([p.detach().flatten() for p in res.model.parameters()]).cpu(), res


def test_grad_accum_equals_full_batch(tmp_path, tiny_tokenizer):
    recs = _records(tiny_tokenizer)
    full, res_full = _one_step(tmp_path, tiny_tokenizer, recs, "b8", 8, 1)
    accum, res_acc = _one_step(tmp_path, tiny_tokenizer, recs, "b2x4", 2, 4)
    init = torch.cat([p.detach().flatten() for p in make_tiny_model(tiny_tokenizer).parameters()])
    assert (full - init).abs().max() > 1e-3  # the step did move the weights
    assert (full - accum).abs().max() < 1e-5
    assert abs(res_full.final_loss - res_acc.final_loss) < 1e-5


def test_naive_per_microbatch_mean_would_differ(tiny_tokenizer):
    """The data of the test above discriminates: averaging micro-batch means (the bug) changes the gradient."""
    ex, _ = to_examples(_records(tiny_tokenizer), None)
    rows = make_rows(ex, False, 512)

    def grad(batches, mode):
        m = make_tiny_model(tiny_tokenizer)
        wrap = CausalLMLoss(m)
        total = sum(int((collate_padded(b, 0)["labels"] != -100).sum()) for b in batches)
        for b in batches:
            c = collate_padded(b, 0)
            n = int((c["labels"] != -100).sum())
            (wrap(**c) / (total if mode == "global" else n * len(batches))).backward()
        return torch.cat([p.grad.flatten() for p in m.parameters()])

    ref = grad([rows], "global")
    assert (grad([rows[i:i + 2] for i in range(0, 8, 2)], "global") - ref).abs().max() < 1e-6
    assert (grad([rows[i:i + 2] for i in range(0, 8, 2)], "naive") - ref).abs().max() > 1e-4


def test_packed_step_equals_padded_step(tmp_path, tiny_tokenizer):
    """Packing changes the layout, not the math: one step over all 8 examples gives the same weights."""
    recs = _records(tiny_tokenizer)
    padded, _ = _one_step(tmp_path, tiny_tokenizer, recs, "pad", 8, 1)
    packed, res = _one_step(tmp_path, tiny_tokenizer, recs, "pack", 8, 1, packing=True)
    assert res.summary["data"]["rows"] < 8  # examples were really packed together
    assert (padded - packed).abs().max() < 1e-5
