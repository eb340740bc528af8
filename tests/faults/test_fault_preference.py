"""Issue 24 item 13: preference objectives train with dropout off (step 0 of DPO is exactly log 2 on a model
with dropout); SimPO's beta/gamma default to its paper's; the reference cache keys on the weights' bytes."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.train import train

WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this".split()


def pairs_file(path, n=8, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"prompt": " ".join(rng.choices(WORDS, k=6)),
                                "chosen": " ".join(rng.choices(WORDS[:6], k=rng.randint(3, 8))),
                                "rejected": " ".join(rng.choices(WORDS[6:], k=rng.randint(3, 8)))}) + "\n")
    return path


def dropout_model(tokenizer, p=0.5):
    from instructkit.models import make_tiny_model
    model = make_tiny_model(tokenizer)
    model.config.attention_dropout = p  # Llama: a float passed to SDPA as dropout_p in train mode
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = p
    return model


def _recipe(tmp_path, model_dir, data, *extra):
    return load_config(Recipe, None, [
        f"model.name_or_path={model_dir}", f"output_dir={tmp_path / 'run'}", f"data.paths=[{data}]",
        "data.max_length=64", "train.objective=dpo", "train.pack_tokens=128", "train.micro_batch_size=1",
        "train.max_steps=1", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
        f"train.dpo.ref_cache_dir={tmp_path / 'refcache'}", *extra])


def _first_loss(res):
    rows = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    return next(r["loss"] for r in rows if "loss" in r)


def test_dpo_step0_is_log2_on_a_model_with_dropout(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = pairs_file(tmp_path / "p.jsonl")
    torch.manual_seed(0)
    res = train(_recipe(tmp_path, tiny_model_dir, data), model=dropout_model(tiny_tokenizer))
    assert _first_loss(res) == pytest.approx(math.log(2), abs=1e-6)
    assert res.summary["data"]["dropout"].startswith("disabled")
    assert all(layer.self_attn.attention_dropout == 0 for layer in res.model.model.layers)


def test_dropout_kept_when_asked(tmp_path, tiny_model_dir, tiny_tokenizer):
    """The switch works both ways: with dropout kept, step 0 is not log 2 (what every run did before)."""
    data = pairs_file(tmp_path / "p.jsonl")
    torch.manual_seed(0)
    res = train(_recipe(tmp_path, tiny_model_dir, data, "train.dpo.disable_dropout=false"),
                model=dropout_model(tiny_tokenizer))
    assert abs(_first_loss(res) - math.log(2)) > 1e-4


def test_reward_model_trains_without_dropout(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = pairs_file(tmp_path / "p.jsonl")
    res = train(_recipe(tmp_path, tiny_model_dir, data, "train.objective=reward"),
                model=dropout_model(tiny_tokenizer))
    assert res.summary["data"]["dropout"].startswith("disabled")
    assert all(layer.self_attn.attention_dropout == 0 for layer in res.model.model.layers)


def test_disable_dropout_finds_modules_lora_and_config():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    from instructkit.train.preference.dropout import disable_dropout

    m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32))
    m = get_peft_model(m, LoraConfig(r=2, lora_dropout=0.1, target_modules=["c_attn"], fan_in_fan_out=True))
    assert disable_dropout(m) > 0
    assert all(mod.p == 0 for mod in m.modules() if isinstance(mod, torch.nn.Dropout))
    assert m.config.resid_pdrop == m.config.attn_pdrop == m.config.embd_pdrop == 0
    assert disable_dropout(m) == 0


@pytest.mark.parametrize("loss, beta, gamma", [("sigmoid", 0.1, 0.0), ("ipo", 0.1, 0.0), ("simpo", 2.0, 1.0),
                                               ("orpo", 0.1, 0.0)])
def test_beta_and_gamma_default_per_loss(loss, beta, gamma):
    from instructkit.config.train import DPOSection
    from instructkit.train.preference.objectives import build_dpo

    d = DPOSection(loss=loss)
    assert d.resolved() == {"beta": beta, "simpo_gamma": gamma}
    assert build_dpo(torch.nn.Linear(1, 1), d, 0).params.beta == beta
    assert DPOSection(loss=loss, beta=0.5).resolved()["beta"] == 0.5  # an explicit value wins
    if loss == "simpo":
        assert DPOSection(loss="simpo", beta=2.5).resolved()["simpo_gamma"] == 1.25
        assert DPOSection(loss="simpo", simpo_gamma=1.6).resolved()["simpo_gamma"] == 1.6


def test_reference_cache_key_sees_any_weight_change(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    from instructkit.train.preference.refcache import weights_digest

    a, b = make_tiny_model(tiny_tokenizer), make_tiny_model(tiny_tokenizer)
    assert weights_digest(a) == weights_digest(b)
    with torch.no_grad():  # swap two rows: every per-tensor sum and abs-sum stays the same
        w = b.model.layers[0].mlp.up_proj.weight
        w[[0, 1]] = w[[1, 0]]
    assert weights_digest(a) != weights_digest(b)
    with torch.no_grad():  # a change far below 7 significant digits of the sums
        b.model.layers[0].mlp.up_proj.weight[[0, 1]] = a.model.layers[0].mlp.up_proj.weight[[0, 1]]
        b.model.norm.weight[0] += 1e-6
    assert weights_digest(a) != weights_digest(b)
    assert weights_digest(b.to(torch.bfloat16)) != weights_digest(a)  # bf16 hashes too
