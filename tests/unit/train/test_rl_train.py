"""Online RL on the training engine (tiny models): step-0 KL/ratio, rewards that raise, bad reward paths,
LoRA rollouts on the live adapter, advantages inside the rollout hook."""

from __future__ import annotations

import json
import random

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.data.tasks.suite.generators import add_sub
from instructkit.errors import ConfigError
from instructkit.train import train


def arithmetic_prompts(path, n, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            row = add_sub(rng)
            f.write(json.dumps({"prompt": row["question"], "answer": row["answer"]}) + "\n")
    return path


def rl_recipe(tmp_path, name, model_dir, *extra, objective="grpo"):
    data = arithmetic_prompts(tmp_path / "prompts.jsonl", 16)
    return load_config(Recipe, None, [
        f"name={name}", f"model.name_or_path={model_dir}", f"output_dir={tmp_path / name}", f"data.paths=[{data}]",
        "data.max_length=128", f"train.objective={objective}", "train.max_steps=2", "train.micro_batch_size=2",
        "train.lr=1e-3", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
        "train.rl.num_generations=3", "train.rl.max_new_tokens=8", "train.rl.heldout_prompts=2", *extra])


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective,method,beta", [("ppo", "lora", 0.05), ("grpo", "full", 0.04),
                                                   ("rloo", "lora", 0.0)])
def test_kl_zero_and_ratio_one_at_step_zero(tmp_path, tiny_model_dir, objective, method, beta):
    res = train(rl_recipe(tmp_path, "r", tiny_model_dir, f"train.method={method}", f"train.rl.beta={beta}",
                          "train.max_steps=1", "train.lora.dropout=0.1", objective=objective))
    first = _rows(res.output_dir)[0]
    assert first["step"] == 1
    # the policy before its first update is the reference (LoRA: B = 0; full: the frozen copy), and the
    # ratio compares it with the rollout log-probs (PPO: stored at rollout time) - dropout is off in RL
    assert abs(first["kl"]) < 1e-6, first
    assert abs(first["ratio"] - 1) < 1e-5 and first["clip_frac"] == 0.0, first
    for k in ("reward", "reward_std", "reward/answer", "entropy", "response_length", "zero_var_groups"):
        assert k in first
    assert res.summary["rl"]["heldout"]["n"] == 2
    assert res.summary["rl"]["last_samples"][0]["step"] == 1  # the samples table of the run's report
    assert (res.output_dir / "rl_samples.jsonl").read_text().strip()


def test_kl_is_logged_when_beta_is_zero_and_grows_after_updates(tmp_path, tiny_model_dir):
    res = train(rl_recipe(tmp_path, "r", tiny_model_dir, "train.method=lora", "train.rl.beta=0", "train.max_steps=3",
                          "train.lr=5e-2", "train.rl.rewards=[{kind: format, pattern: '[0-9]'}]"))
    kls = [r["kl"] for r in _rows(res.output_dir) if "kl" in r]
    assert len(kls) == 3 and kls[0] < 1e-6 and kls[-1] > 1e-6


REWARDS_MODULE = '''
def flaky(prompts, completions, answers=None, **kw):
    out = []
    for c in completions:
        if len(c) % 3 == 0:
            raise ValueError("cannot parse")
        out.append(None if len(c) % 3 == 1 else 1.0)
    return out
'''


def test_a_raising_reward_is_counted_not_fatal(tmp_path, tiny_model_dir, monkeypatch):
    (tmp_path / "myrewards.py").write_text(REWARDS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = train(rl_recipe(tmp_path, "r", tiny_model_dir, "train.method=lora",
                          "train.rl.rewards=[{kind: function, fn: 'myrewards:flaky', on_error: -1.0}, "
                          "{kind: answer, weight: 0.5}]"))
    fails = res.summary["rl"]["reward_failures"]
    assert any(k.startswith("flaky: ValueError: cannot parse") for k in fails), fails
    assert any(k.startswith("flaky: returned NoneType") for k in fails), fails
    rows = [r for r in _rows(res.output_dir) if "reward_failures" in r]
    assert len(rows) == 2 and sum(r["reward_failures"] for r in rows) > 0
    # failed completions were scored on_error = -1, the others 1.0
    vals = {r["reward/flaky"] for r in map(json.loads, (res.output_dir / "rl_samples.jsonl").read_text().splitlines())}
    assert vals <= {-1.0, 1.0} and -1.0 in vals


def test_a_reward_path_that_does_not_import_fails_before_the_model_loads(tmp_path):
    r = rl_recipe(tmp_path, "r", tmp_path / "no-such-model", "train.rl.rewards=[{kind: function, fn: 'nosuchpkg.r:f'}]")
    with pytest.raises(ConfigError, match="nosuchpkg"):
        train(r, tokenizer=_tok())


def test_answer_reward_needs_gold_answers(tmp_path):
    r = rl_recipe(tmp_path, "r", tmp_path / "no-such-model")
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "Say hi"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(ConfigError, match="gold answers"):
        train(r, tokenizer=_tok())


def _tok():
    from instructkit.models import make_tiny_tokenizer
    return make_tiny_tokenizer()


@pytest.mark.parametrize("method", ["lora", "dora"])  # DoRA: peft's per-row adapter batches refuse it
def test_lora_rollouts_use_the_live_adapter(tiny_model, tiny_tokenizer, method):
    from instructkit.train.methods import AdapterSpec, build_model
    from instructkit.train.rl.rollout import reference_mode, sample

    lm = build_model("x", method=method, dtype="float32", attn_implementation="eager",
                     spec=AdapterSpec(4, 8, 0.0, ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]),
                     gradient_checkpointing=False, model=tiny_model)
    ids = tiny_tokenizer("the answer is", add_special_tokens=False)["input_ids"]
    go = lambda: [r.completion_ids for r in sample(lm, tiny_tokenizer, [(0, ids), (1, ids[:2])], g=2,  # noqa: E731
                                                   max_new_tokens=8, temperature=1.0, top_p=1.0, seed=7,
                                                   batch_size=8)]
    base = go()
    assert go() == base  # seeded: the same weights give the same samples
    assert lm.training  # the engine's eval() is undone
    with torch.no_grad():  # train the adapter "by hand": the engine must see it without any copy or reload
        for n, p in lm.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.5)
    changed = go()
    assert changed != base
    with reference_mode(lm, None):  # the reference is the same base with the adapter off
        assert go() == base


def test_rollout_hook_advantages_on_fixed_rewards(tiny_model, tiny_tokenizer):
    from types import SimpleNamespace

    from instructkit.config.rl import RLSection
    from instructkit.train.rl.objective import LossParams, RLLoss
    from instructkit.train.rl.rollout import Rollout
    from instructkit.train.rl.step import RLStep

    rl = RLSection(num_generations=2, max_new_tokens=4)
    mk = lambda c: Rollout(0, [5, 6, 7], c, "", "stop")  # noqa: E731
    rolls = [mk([8, 9]), mk([10]), mk([11, 12, 13]), mk([14])]
    h = 0.5 / (0.5 ** 0.5 + 1e-4)  # group (1, 0): centred +-0.5 over its unbiased std sqrt(0.5)
    for algo, want in (("grpo", [h, -h, 0.0, 0.0]),
                       ("rloo", [1.0, -1.0, 0.0, 0.0])):
        w = RLLoss(tiny_model, LossParams(algo, 0.0, 0.2, 0.2, "token", has_reference=False))
        step = RLStep(w, tiny_tokenizer, [SimpleNamespace(ids=[5, 6, 7])], [], rl, algo=algo, seed=0,
                      device=torch.device("cpu"), pad_id=0)
        b = step._micro(rolls, [1.0, 0.0, 0.5, 0.5])
        per_seq = [b["adv"][b["seg"] == i][0].item() for i in range(4)]
        assert per_seq == pytest.approx(want, rel=1e-3)
        assert b["seg"].tolist() == [0, 0, 1, 2, 2, 2, 3] and int(b["n_tokens"]) == 7
        # labels: completion tokens only, each at the position that predicts it
        assert b["labels"][0].tolist()[:5] == [-100, -100, 8, 9, -100]


def test_ppo_against_a_reward_model(tmp_path, tiny_model_dir, tiny_model, tiny_tokenizer):
    """InstructGPT's loop on tiny models: a reward-model folder as the reward, full FT (frozen reference
    copy, beta > 0), the held-out report has the reward model's win rate over the start."""
    from instructkit.train.preference.reward import to_reward_model

    rm = to_reward_model(tiny_model)
    torch.manual_seed(0)
    torch.nn.init.normal_(rm.score.weight, std=1.0)
    rm.save_pretrained(tmp_path / "rm")
    tiny_tokenizer.save_pretrained(tmp_path / "rm")
    res = train(rl_recipe(tmp_path, "ppo", tiny_model_dir, "train.method=full", "train.rl.beta=0.1",
                          "train.rl.heldout_prompts=4", "train.lr=1e-3",
                          f"train.rl.rewards=[{{kind: model, path: {tmp_path / 'rm'}}}]", objective="ppo"))
    rows = _rows(res.output_dir)
    assert {"value_loss", "kl", "reward/model"} <= set(rows[0])
    h = res.summary["rl"]["heldout"]
    assert "model" in h["metrics"] and 0.0 <= h["win_rate_vs_start"]["value"] <= 1.0
    assert res.summary["data"]["reference"] == "frozen copy"


def test_g_samples_of_a_prompt_share_one_prefill(tiny_model, tiny_tokenizer):
    from instructkit.train.rl.rollout import sample

    shapes = []
    tiny_model.get_decoder().register_forward_hook(lambda m, a, kw, out: shapes.append(tuple(kw["input_ids"].shape)),
                                                   with_kwargs=True)
    p1 = tiny_tokenizer("the answer is one", add_special_tokens=False)["input_ids"]
    p2 = tiny_tokenizer("two plus", add_special_tokens=False)["input_ids"]
    rolls = sample(tiny_model, tiny_tokenizer, [(0, p1), (1, p2)], g=4, max_new_tokens=3, temperature=1.0, top_p=1.0,
                   seed=1, batch_size=16)
    assert [r.prompt_index for r in rolls] == [0] * 4 + [1] * 4
    assert shapes[0] == (2, len(p1))  # one prefill row per prompt (left-padded), not one per completion
    assert shapes[1] == (8, 1)  # then the 8 completions decode together
