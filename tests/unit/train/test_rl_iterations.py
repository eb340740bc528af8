"""``train.rl.num_iterations`` (mu): several optimizer updates on one step's rollouts. The old log-probs
come from the rollout policy, so after the first update the ratio leaves 1 and the clip acts; the order of
the micro-batches in each later pass is seeded (a resumed run repeats it; the kill -9 test covers mu = 2)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from instructkit.config.rl import RLSection
from instructkit.train import train
from instructkit.train.rl.objective import LossParams, RLLoss
from instructkit.train.rl.rollout import Rollout
from instructkit.train.rl.step import RLStep

from test_rl_train import _rows, rl_recipe  # noqa: E402  (same folder)


def _step(model, tok, algo, mu, eps=0.2):
    rl = RLSection(num_generations=2, max_new_tokens=4, num_iterations=mu, beta=0.0)
    w = RLLoss(model, LossParams(algo, 0.0, eps, eps, "token", has_reference=False))
    return w, RLStep(w, tok, [SimpleNamespace(ids=[5, 6, 7])], [], rl, algo=algo, seed=3,
                     device=torch.device("cpu"), pad_id=0)


ROLLS = [Rollout(0, [5, 6, 7], c, "", "stop") for c in ([8, 9], [10], [11, 12, 13], [14])]


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_second_pass_sees_ratio_off_one_and_clips(tiny_model, tiny_tokenizer, algo):
    w, step = _step(tiny_model, tiny_tokenizer, algo, mu=2, eps=0.01)
    b = step._micro(ROLLS, [1.0, 0.0, 0.5, 0.25])
    assert "old_logp" in b  # taken at rollout time, before any update
    opt = torch.optim.SGD(tiny_model.parameters(), lr=0.5)
    ratios, clips = [], []
    for _ in range(2):  # the loop's two passes over the same micro-batch
        w(**b).backward()
        opt.step()
        opt.zero_grad()
        m = w.metrics.pop(lambda t: t)
        ratios.append(m["ratio"])
        clips.append(m["clip_frac"])
    assert ratios[0] == pytest.approx(1.0, abs=1e-5) and clips[0] == 0.0  # pass 1: the rollout policy itself
    assert abs(ratios[1] - 1.0) > 1e-3 and clips[1] > 0.0                 # pass 2: moved, clipped


def test_one_iteration_keeps_the_on_policy_path(tiny_model, tiny_tokenizer):
    _, step = _step(tiny_model, tiny_tokenizer, "grpo", mu=1)
    assert "old_logp" not in step._micro(ROLLS, [1.0, 0.0, 0.5, 0.25])  # ratio exactly 1 from the forward


def test_reorder_is_a_seeded_permutation(tiny_model, tiny_tokenizer):
    _, step = _step(tiny_model, tiny_tokenizer, "grpo", mu=3)
    micro = [{"i": i} for i in range(8)]
    a, b = step.reorder(micro, 4, 1), step.reorder(micro, 4, 1)
    assert a == b and sorted(x["i"] for x in a) == list(range(8))
    orders = {tuple(x["i"] for x in step.reorder(micro, s, k)) for s in range(3) for k in (1, 2)}
    assert len(orders) > 1  # differs across steps and passes


def test_training_with_two_iterations(tmp_path, tiny_model_dir, monkeypatch):
    """The loop makes mu updates per step (the schedule counts them), rolling out once per step."""
    (tmp_path / "lenreward.py").write_text("def length(prompts, completions, **kw):\n"
                                           "    return [float(len(c)) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # a reward with variance in every group: the policy moves
    res = train(rl_recipe(tmp_path, "r", tiny_model_dir, "train.method=lora", "train.rl.num_iterations=2",
                          "train.max_steps=2", "train.grad_accum=2", "train.micro_batch_size=1", "train.lr=5e-2",
                          "train.rl.clip_eps_low=0.01", "train.rl.clip_eps_high=0.01", "train.scheduler=linear",
                          "train.warmup_steps=1", "train.rl.beta=0.0",
                          "train.rl.rewards=[{kind: function, fn: 'lenreward:length'}]"))
    rows = [r for r in _rows(res.output_dir) if "ratio" in r]
    assert [r["step"] for r in rows] == [1, 2]
    # the schedule counts updates: 1 warmup + linear decay over 2 steps x 2 updates; after step 1 (2 updates)
    # lr = (4 - 2) / (4 - 1) of the peak (with one update per step it would be back at the peak)
    assert rows[0]["lr"] == pytest.approx(5e-2 * 2 / 3)
    # step 2's second pass runs on weights one update past its rollouts: ratio off 1, tokens clipped
    assert abs(rows[1]["ratio"] - 1.0) > 1e-4 and rows[1]["clip_frac"] > 0.0, rows[1]
    assert rows[1]["kl"] > 0.0
    samples = [json.loads(x) for x in (res.output_dir / "rl_samples.jsonl").read_text().splitlines()]
    assert sorted({s["step"] for s in samples}) == [1, 2]  # one rollout per step, not per update
