"""RL advantages, GAE, KL and losses against values computed by hand."""

import math

import pytest
import torch

from instructkit.train.rl import advantages as A
from instructkit.train.rl.losses import AGGREGATE, clipped_policy_loss, clipped_value_loss


def test_grpo_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 2.0, 2.0]])
    adv = A.grpo_advantages(r)
    s1 = math.sqrt(1 / 3)  # unbiased std of (1, 0, 0, 1)
    assert adv[0].tolist() == pytest.approx([0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4), -0.5 / (s1 + 1e-4),
                                             0.5 / (s1 + 1e-4)], rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # a zero-variance group carries no signal
    s3 = math.sqrt(2 / 3)  # (3, 1, 2, 2): mean 2, squared deviations 1 + 1 + 0 + 0 over 3
    assert adv[2].tolist() == pytest.approx([1 / (s3 + 1e-4), -1 / (s3 + 1e-4), 0.0, 0.0], rel=1e-6)
    # Dr. GRPO: centred, not scaled
    assert A.grpo_advantages(r, scale=False)[0].tolist() == [0.5, -0.5, -0.5, 0.5]
    assert A.zero_variance_share(r) == pytest.approx(1 / 3)


def test_rloo_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.5], [2.0, 2.0, 2.0]])
    # i=0: 1 - mean(0, 0.5); i=1: 0 - mean(1, 0.5); i=2: 0.5 - mean(1, 0)
    assert A.rloo_advantages(r)[0].tolist() == pytest.approx([0.75, -0.75, 0.0])
    assert A.rloo_advantages(r)[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        A.rloo_advantages(torch.tensor([[1.0]]))


def test_gae_on_a_fixed_trajectory():
    rewards, values = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.6, 0.7])
    adv, ret = A.gae(rewards, values, gamma=1.0, lam=0.5)
    # delta_2 = 1 - .7 = .3; delta_1 = .7 - .6 = .1, A_1 = .1 + .5 * .3; delta_0 = .6 - .5, A_0 = .1 + .5 * .25
    assert adv.tolist() == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist() == pytest.approx([0.725, 0.85, 1.0])
    adv, ret = A.gae(rewards, values, gamma=0.9, lam=1.0)  # lam = 1: returns are the discounted reward
    assert adv.tolist() == pytest.approx([0.31, 0.3, 0.3])
    assert ret.tolist() == pytest.approx([0.81, 0.9, 1.0])


def test_ppo_token_rewards_put_the_score_on_the_last_token():
    r = A.ppo_token_rewards(2.0, torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0]), beta=0.1)
    assert r.tolist() == pytest.approx([-0.05, 2.1])


def test_k3_is_zero_on_agreement_and_positive_else():
    lp = torch.tensor([-1.0, -0.5])
    assert A.k3(lp, lp).tolist() == [0.0, 0.0]
    assert A.k3(torch.tensor([-1.0]), torch.tensor([-2.0])).item() == pytest.approx(math.exp(-1))


def test_clipped_policy_loss_is_pessimistic_and_asymmetric():
    logp, old = torch.tensor([0.5, 0.5, -0.5]), torch.zeros(3)
    loss, ratio, clipped = clipped_policy_loss(logp, old, torch.tensor([1.0, -1.0, -1.0]), 0.2, 0.28)
    e = math.exp(0.5)
    # A > 0 and ratio above 1 + eps_high: clipped at 1.28; A < 0: the unclipped (worse) term is kept
    assert loss.tolist() == pytest.approx([-1.28, e, 0.8])
    assert clipped.tolist() == [True, False, True]
    assert ratio.tolist() == pytest.approx([e, e, math.exp(-0.5)])


def test_clipped_value_loss():
    v, old, ret = torch.tensor([1.0, 0.1]), torch.tensor([0.5, 0.5]), torch.tensor([0.0, 0.0])
    loss, clipped = clipped_value_loss(v, old, ret, 0.2)
    assert loss.tolist() == pytest.approx([0.5, 0.045])  # 0.5 * max(1.0, 0.49); 0.5 * max(0.01, 0.09)
    assert clipped.tolist() == [False, True]


def test_aggregations():
    per_tok, seg = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([0, 0, 0, 1, 1])
    assert AGGREGATE["token"](per_tok, seg, 2, 8).item() == 15.0
    assert AGGREGATE["sequence"](per_tok, seg, 2, 8).item() == pytest.approx(2.0 + 4.5)
    assert AGGREGATE["dr_grpo"](per_tok, seg, 2, 8).item() == 15.0  # divided by 2 * 8 in the loop's count
