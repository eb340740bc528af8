"""One SFT step's speed under the speed levers of issue #26, on the embedded model: attention (``sdpa`` with
transformers' block-diagonal mask vs ``sdpa_packed``, models/attention.py) and ``torch.compile`` (inductor's CPU
backend) of each decoder layer, of its MLP and norms only, or none.

One packed row of ``--tokens`` tokens holding ``--docs`` examples of random tokens, every other position trained,
the training loss wrapper (train/loss.py), fused AdamW; LoRA r16 on a bf16 base (``--method lora``) or full
training with fp32 master weights (``--method full``), both under bf16 autocast as ``dtype: auto`` trains on an
AVX512-BF16 CPU. Prints one JSON line: the median tokens/s over ``--steps`` steps after ``--warmup`` (compile
happens in the warm-up; ``--vary`` changes the row length every step, as real packed rows do).

    OMP_NUM_THREADS=2 python bench/probe_step.py --method lora --tokens 1024 --docs 4 --attn sdpa
    OMP_NUM_THREADS=2 python bench/probe_step.py --method lora --tokens 1024 --docs 4 --attn sdpa_packed
    OMP_NUM_THREADS=2 python bench/probe_step.py --method lora --tokens 512 --docs 2 --attn sdpa --compile layers
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("lora", "full"), default="lora")
    p.add_argument("--attn", choices=("sdpa", "sdpa_packed"), default="sdpa_packed")
    p.add_argument("--compile", choices=("none", "layers", "parts"), default="none",
                   help="layers: each decoder layer; parts: each layer's MLP and norms (attention stays eager)")
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--docs", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--vary", action="store_true", help="row length varies by up to 192 tokens between steps")
    a = p.parse_args()

    from instructkit.models import load_model, resolve_model
    from instructkit.models.attention import use_packed_attention
    from instructkit.train.loss import CausalLMLoss

    torch.manual_seed(0)
    model = load_model(resolve_model("smollm2-135m-instruct"), dtype="bfloat16" if a.method == "lora" else "float32",
                       attn_implementation="sdpa")
    if a.attn == "sdpa_packed":
        use_packed_attention(model)
    if a.method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
        for q in model.parameters():
            if q.requires_grad:
                q.data = q.data.float()  # fp32 trainable weights, as train's mixed precision keeps them
    wrap = CausalLMLoss(model)
    dec = model.get_decoder()
    for layer in dec.layers:
        if a.compile == "layers":
            layer.compile()
        elif a.compile == "parts":
            for m in (layer.mlp, layer.input_layernorm, layer.post_attention_layernorm):
                m.compile(dynamic=True)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5, fused=True)
    vocab = model.config.vocab_size
    rates, warm_s = [], 0.0
    for i in range(a.warmup + a.steps):
        T = a.tokens - 64 * (i % 4) if a.vary else a.tokens
        d = T // a.docs
        ids = torch.randint(0, vocab, (1, T))
        pos = torch.cat([torch.arange(d)] * (a.docs - 1) + [torch.arange(T - d * (a.docs - 1))]).unsqueeze(0)
        labels = ids.clone()
        labels[:, ::2] = -100
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = wrap(input_ids=ids, labels=labels, position_ids=pos)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i < a.warmup:
            warm_s += dt
            print(f"warm-up step {i}: {T} tokens, {dt:.2f} s", file=sys.stderr)
        else:
            rates.append(T / dt)
    print(json.dumps({"method": a.method, "attn": a.attn, "compile": a.compile, "tokens": a.tokens, "docs": a.docs,
                      "vary": a.vary, "threads": torch.get_num_threads(), "warmup_s": round(warm_s, 1),
                      "tok_s_median": round(statistics.median(rates), 1), "tok_s": [round(r, 1) for r in rates]}))


if __name__ == "__main__":
    main()
