"""RL log-probs are those of the distribution the rollouts were sampled from, softmax(z / T) (as TRL and
verl): the ratio, the policy gradient and the KL of a T=0.8 rollout use logits / 0.8, not the raw logits."""

from __future__ import annotations

import pytest
import torch

from instructkit.train.rl.rollout import Rollout, build_batch, rollout_logprobs, token_forward


def _batch():
    rolls = [Rollout(0, [5, 6, 7], [8, 9, 10], "", "stop"), Rollout(0, [5, 6], [11, 12], "", "stop")]
    return build_batch(rolls, pad_id=0, max_new_tokens=4)


@pytest.mark.parametrize("t", [1.0, 0.8, 0.5])
def test_token_logprobs_are_of_the_tempered_distribution(tiny_model, t):
    b = _batch()
    with torch.no_grad():
        logits = tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float()
    keep = b["labels"] != -100
    want = torch.log_softmax(logits[keep] / t, -1).gather(-1, b["labels"][keep][:, None])[:, 0]
    lp, ent, _ = token_forward(tiny_model, b, temperature=t)
    assert torch.allclose(lp, want, atol=1e-5)
    assert torch.allclose(rollout_logprobs(tiny_model, b, temperature=t)[0], want, atol=1e-5)
    p = torch.softmax(logits[keep] / t, -1)
    assert torch.allclose(ent, -(p * p.clamp_min(1e-30).log()).sum(-1), atol=1e-4)


def test_training_scores_rollouts_at_their_sampling_temperature(tmp_path, tiny_model_dir, monkeypatch):
    """End to end: every log-prob pass of a run sampled at T=0.7 (policy, reference, old) uses T=0.7."""
    import instructkit.train.rl.objective as O
    import instructkit.train.rl.rollout as R
    from instructkit.train import train
    from tests.unit.train.test_rl_train import rl_recipe

    seen = []
    real = R.token_forward

    def spy(*a, **k):
        seen.append(k.get("temperature"))
        return real(*a, **k)

    monkeypatch.setattr(R, "token_forward", spy)
    monkeypatch.setattr(O, "token_forward", spy)
    train(rl_recipe(tmp_path, "t07", tiny_model_dir, "train.max_steps=1", "train.rl.temperature=0.7",
                    "train.rl.beta=0.04", "train.method=lora"))
    assert seen and set(seen) == {0.7}
