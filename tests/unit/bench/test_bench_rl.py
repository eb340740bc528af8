"""bench_rl's pure helpers (issue #21): the reward both contenders get, the settings map onto TRL's GRPOConfig,
the useful-FLOP model, the parity check's fixed completions; and that the bench imports without TRL."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))
import rl_shared  # noqa: E402


def test_answer_reward_reads_the_last_number_of_plain_and_chat_completions():
    completions = ["10 x 5 = 50.", [{"role": "assistant", "content": "It is 1,200"}], "no idea", "50 or 51"]
    assert rl_shared.answer_reward(None, completions, answers=["50", ["1200"], "3", "50"]) == [1.0, 1.0, 0.0, 0.0]
    assert rl_shared.last_number("-3.5 then 7") == 7.0 and rl_shared.last_number("none") is None
    with pytest.raises(ValueError, match="gold answers"):
        rl_shared.answer_reward(None, ["1"])


def test_step_flops_by_hand():
    # one prompt of 2 tokens, completions of 1 and 2 tokens; N_body 10, V d 3, L = d = 1, N_lora 1
    # tokens 5, predicted (LM head) 3, attended positions 3 (prompt) + 3 + 7 (completions) = 13
    f = rl_shared.step_flops([(2, [1, 2])], n_body=10, vocab_x_d=3, n_layers=1, d_model=1, n_lora=1)
    assert f["rollout"] == f["reference"] == 2 * 10 * 5 + 2 * 3 * 3 + 4 * 13 == 170
    assert f["train"] == (4 * 10 + 6 * 1) * 5 + 4 * 3 * 3 + 12 * 13 == 422
    assert f["total"] == 762
    full = rl_shared.step_flops([(2, [1, 2])], n_body=10, vocab_x_d=3, n_layers=1, d_model=1, lora=False,
                                reference=False)
    assert full["train"] == 6 * 10 * 5 + 6 * 3 * 3 + 12 * 13 and full["reference"] == 0


def test_group_lengths_takes_g_consecutive_rows_per_prompt():
    assert rl_shared.group_lengths([7, 7, 9, 9], [1, 2, 3, 4], 2) == [(7, [1, 2]), (9, [3, 4])]
    with pytest.raises(ValueError):
        rl_shared.group_lengths([7, 7, 9], [1, 2, 3], 2)


def test_trl_settings_follow_the_recipe():
    rl = SimpleNamespace(num_generations=8, max_new_tokens=20, temperature=0.8, top_p=1.0, beta=0.02,
                         clip_eps_low=0.2, clip_eps_high=0.28, loss_agg="sequence", scale_rewards=False)
    kw = rl_shared.trl_grpo_kwargs(rl, completions_per_step=16)
    assert kw["loss_type"] == "grpo" and kw["scale_rewards"] == "none" and kw["epsilon_high"] == 0.28
    assert kw["num_iterations"] == 1 and kw["generation_batch_size"] == kw["per_device_train_batch_size"] == 16
    assert rl_shared.LOSS_TYPE == {"token": "dapo", "sequence": "grpo", "dr_grpo": "dr_grpo"}


def test_trl_accepts_the_settings():
    pytest.importorskip("trl")
    from trl import GRPOConfig

    rl = SimpleNamespace(num_generations=4, max_new_tokens=8, temperature=0.8, top_p=1.0, beta=0.02,
                         clip_eps_low=0.2, clip_eps_high=0.2, loss_agg="token", scale_rewards=True)
    cfg = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False, report_to=[],
                     **rl_shared.trl_grpo_kwargs(rl, completions_per_step=8))
    assert cfg.steps_per_generation == 1 and cfg.loss_type == "dapo" and cfg.scale_rewards == "group"


def test_parity_completions_mix_right_wrong_and_unfinished():
    texts = rl_shared.parity_texts("12", 8, rotate=3)
    rewards = rl_shared.answer_reward(None, [t for t, _ in texts], answers=["12"] * 8)
    assert 0 < sum(rewards) < 8  # non-zero advantages
    assert sum(not eos for _, eos in texts) == 1 and len({len(t) for t, _ in texts}) > 4
    assert rl_shared.rel_diff(1.0, 1.01) == pytest.approx(0.01 / 1.01) and rl_shared.rel_diff(0.0, 0.0) == 0.0
    assert rl_shared.steady([5, 1, 1]) == [1, 1] and rl_shared.steady([5]) == [5]


def test_bench_imports_without_trl(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    for name in ("bench_rl", "rl_children"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        mod = importlib.import_module(name)
        assert mod.__file__.startswith(str(BENCH))
    assert "trl" in importlib.import_module("rl_children").CHILDREN
