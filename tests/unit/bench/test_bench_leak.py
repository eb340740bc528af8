"""bench_train's packing-leak check runs in float32 and gives the model back bit for bit."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from sft_shared import leak_check, logprobs  # noqa: E402

from instructkit.models.tiny import make_tiny_model  # noqa: E402


def _model():
    m = make_tiny_model().to(torch.bfloat16)
    m.lm_head.weight.data = m.lm_head.weight.data.float()  # a tensor kept in fp32 (like LoRA adapters)
    return m


def test_leak_check_restores_every_tensor_and_separates_leak_from_numerics():
    m = _model()
    before = {n: (t.dtype, t.clone()) for n, t in [*m.named_parameters(), *m.named_buffers()]}
    ids = torch.randint(3, 200, (1, 24))
    segs = [(0, 10), (10, 24)]
    pos = torch.tensor([list(range(10)) + list(range(14))])
    clean = leak_check(m, ids[0].tolist(), segs, lambda: logprobs(m, input_ids=ids, position_ids=pos))
    # attention across the boundary (plain causal over the whole row) is a real leak
    leaky = leak_check(m, ids[0].tolist(), segs, lambda: logprobs(m, input_ids=ids))
    assert clean < 2e-3 < leaky
    after = {n: (t.dtype, t) for n, t in [*m.named_parameters(), *m.named_buffers()]}
    assert before.keys() == after.keys()
    for n, (dt, t) in before.items():
        assert after[n][0] == dt and torch.equal(after[n][1], t), n
