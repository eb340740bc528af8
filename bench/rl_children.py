"""bench_rl's children: instructkit GRPO and TRL GRPOTrainer on the same recipe, the same-run GEMM ceiling, and
the loss-parity runs (both sides fed the same fixed completions). Each runs in its own process
(``bench_rl.py --variant NAME``); torch, instructkit and TRL are imported here, inside the functions.

Both timed sides are measured the same way: the shared optimizer-step clock (``common.StepClock``) started
once the model is loaded, just before the tool's trainer is built, so setup + step 1 is the first interval; the
rollout call is wrapped (instructkit: ``train.rl.step.sample``; TRL: ``GRPOTrainer._generate_single_turn``)
to time it and to record each step's prompts and completion lengths (useful FLOPs, same-prompt check).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import common
import rl_shared

REWARD_FN = "rl_shared:answer_reward"  # importable in the children: bench/ is sys.path[0] there
GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]  # SmolLM2-135M linear layers (in, out)


# -- shared by every child ----------------------------------------------------------------------------------------
def load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    import torch

    from instructkit.models import load_model, load_tokenizer, resolve_model

    torch.manual_seed(0)
    path = resolve_model(args.model)
    return load_model(path, dtype=args.dtype, attn_implementation="sdpa"), load_tokenizer(path), path


def make_recipe(args: argparse.Namespace, out: str, path: str) -> Any:
    """The recipe (recipes/rlvr_times.yaml by default) with the bench's overrides: the single source of every
    setting both sides use (TRL's GRPOConfig is derived from it)."""
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe

    over = [f"output_dir={out}", f"seed={args.seed}", f"model.name_or_path={path}", f"model.dtype={args.dtype}",
            "model.attn_implementation=sdpa", "train.objective=grpo", "train.method=lora", "train.lora.dropout=0.0",
            "train.lora.target_modules=[all-linear]", f"train.max_steps={args.steps}", "train.log_every=1",
            "train.tensorboard=false", "train.progress=false", "train.save_every=0", "train.grad_accum=1",
            "train.optimizer=adamw", "train.weight_decay=0.0", "train.max_grad_norm=1.0", "train.eval_every=0",
            "train.gradient_checkpointing=false", "train.rl.heldout_prompts=0", "train.rl.log_samples=0",
            f"train.rl.rewards=[{{kind: function, fn: '{REWARD_FN}'}}]"]
    for flag, key in (("g", "train.rl.num_generations"), ("max_new_tokens", "train.rl.max_new_tokens"),
                      ("prompts_per_step", "train.micro_batch_size"), ("beta", "train.rl.beta"),
                      ("loss_agg", "train.rl.loss_agg"), ("temperature", "train.rl.temperature"), ("lr", "train.lr")):
        if getattr(args, flag, None) is not None:
            over.append(f"{key}={getattr(args, flag)}")
    return load_config(Recipe, args.recipe, over)


def task_prompts(recipe: Any, tok: Any) -> list[Any]:
    """The recipe's training prompts in the order instructkit's loop takes them (epoch 0: randperm(seed))."""
    import torch

    from instructkit.train.rl import prompts as P

    rl = recipe.train.rl
    train, _, _ = P.from_task(rl.task, rl.template, rl.instruction, rl.train_prompts, 0, recipe.seed)
    train, _ = P.tokenize(train, tok, recipe.model.chat_template, recipe.data.max_length)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    return [train[i] for i in order]


def fingerprint(ids: Any) -> str:
    return hashlib.sha1(json.dumps([int(x) for x in ids]).encode()).hexdigest()[:10]


def model_facts(lm: Any) -> dict[str, Any]:
    """Parameter dtypes and the LoRA A checksum, taken at the first rollout (before any optimizer step)."""
    dts = sorted({str(p.dtype) for p in lm.parameters()})
    trainable = sorted({str(p.dtype) for p in lm.parameters() if p.requires_grad})
    a = sum(float(p.detach().double().abs().sum()) for n, p in lm.named_parameters() if "lora_A" in n)
    return {"param_dtypes": dts, "trainable_dtypes": trainable, "lora_A_abs_sum": a,
            "trainable_params": sum(p.numel() for p in lm.parameters() if p.requires_grad)}


class Rollouts:
    """Per rollout call: seconds, prompt and completion lengths (G consecutive per prompt), prompt fingerprints."""

    def __init__(self, g: int):
        self.g, self.calls, self.facts = g, [], None

    def record(self, lm: Any, seconds: float, prompts: list, completion_lens: list[int]) -> None:
        if self.facts is None:
            self.facts = model_facts(lm)
        fps = [fingerprint(p) for p in prompts[::self.g]]
        self.calls.append({"s": seconds, "prompt_lens": [len(p) for p in prompts], "completion_lens": completion_lens,
                           "prompts": fps})


def timing(clock: Any, ro: Rollouts, flop_consts: dict[str, Any]) -> dict[str, Any]:
    """One clock for both: setup + step 1, the steady steps (2..N), rollouts, useful FLOPs per step."""
    stamps, t0 = clock.stamps, clock.t0
    n = len(stamps)
    steps = clock.step_s
    toks = [sum(c["completion_lens"]) for c in ro.calls]
    flops = [rl_shared.step_flops(rl_shared.group_lengths(c["prompt_lens"], c["completion_lens"], ro.g),
                                  **flop_consts)["total"] for c in ro.calls]
    steady_s = stamps[-1] - stamps[0] if n > 1 else None
    return {"steps": n, "step_s": [round(x, 3) for x in steps], "first_step_s": round(steps[0], 3) if n else None,
            "s_per_step": round((stamps[-1] - t0) / n, 3) if n else None,
            "steady_s_per_step": round(steady_s / (n - 1), 3) if steady_s else None,
            "steps_per_min": round(60 * (n - 1) / steady_s, 3) if steady_s else None,
            "rollout_s": [round(c["s"], 3) for c in ro.calls], "rollout_tokens": toks,
            "rollout_tok_s": round(sum(toks) / sum(c["s"] for c in ro.calls), 2) if ro.calls else None,
            "rollout_share": round(sum(c["s"] for c in ro.calls) / (stamps[-1] - t0), 3) if n else None,
            "mean_completion_len": round(sum(toks) / max(sum(len(c["completion_lens"]) for c in ro.calls), 1), 2),
            "useful_flops": flops,
            "steady_flops_per_s": (sum(flops[1:n]) / steady_s) if steady_s else None,
            "prompts_per_step": [c["prompts"] for c in ro.calls], "model": ro.facts}


def flop_constants(lm: Any, lora_r: int) -> dict[str, Any]:
    """The FLOP model's constants from the plain (not yet adapted) model: N_body = parameters without the
    embedding (and without a separate LM head), V d, L, d, and the parameters LoRA r adds on every linear layer
    of the decoder (peft 'all-linear' leaves the LM head out)."""
    import torch

    cfg = lm.config
    emb = cfg.vocab_size * cfg.hidden_size
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    total = sum(p.numel() for p in lm.parameters())
    n_lora = sum(lora_r * (m.in_features + m.out_features) for n, m in lm.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
    return {"n_body": total - emb * (1 if tied else 2), "vocab_x_d": emb, "n_layers": cfg.num_hidden_layers,
            "d_model": cfg.hidden_size, "n_lora": n_lora, "lora": True, "reference": True}


# -- the parity check's fixed completions ---------------------------------------------------------------------
class Fixed:
    """Fixed completions per prompt (token ids, text, finish reason), the same on both sides: keyed by the
    prompt's token ids, built from ``rl_shared.parity_texts`` with the tokenizer; EOS = the tokenizer's."""

    def __init__(self, prompts: list[Any], tok: Any, g: int, max_new: int):
        self.answers = {tuple(p.ids): p.answer for p in prompts}
        self.tok, self.g, self.max_new, self.cache = tok, g, max_new, {}

    def __call__(self, prompt_ids: Any) -> list[tuple[list[int], str, str]]:
        key = tuple(int(x) for x in prompt_ids)
        if key not in self.cache:
            out = []
            for text, eos in rl_shared.parity_texts(self.answers[key], self.g, rotate=sum(key) % 8):
                ids = list(self.tok(text, add_special_tokens=False)["input_ids"]) + ([self.tok.eos_token_id] if eos
                                                                                     else [])
                finish = "stop" if eos else "length"
                if len(ids) > self.max_new:
                    ids, finish = ids[:self.max_new], "length"
                out.append((ids, self.tok.decode(ids, skip_special_tokens=True), finish))
            self.cache[key] = out
        return self.cache[key]


# -- instructkit ------------------------------------------------------------------------------------------------
def run_instructkit(args: argparse.Namespace, parity: bool = False) -> dict[str, Any]:
    import instructkit.train.rl.step as rl_step
    from instructkit.train import train
    from instructkit.train.rl.rollout import Rollout

    model, tok, path = load(args)
    out = tempfile.mkdtemp(prefix="bench-ik-rl-")
    recipe = make_recipe(args, out, path)
    rl = recipe.train.rl
    consts = flop_constants(model, recipe.train.lora.r)
    ro = Rollouts(rl.num_generations)
    fixed = Fixed(task_prompts(recipe, tok), tok, rl.num_generations, rl.max_new_tokens) if parity else None
    real = rl_step.sample

    def sample(lm: Any, tokenizer: Any, prompts: list, **kw: Any) -> list:
        t = time.perf_counter()
        if fixed is None:
            rolls = real(lm, tokenizer, prompts, **kw)
        else:  # the parity check: no sampling, the same completions TRL gets
            rolls = [Rollout(pi, list(ids), c, text, fin) for pi, ids in prompts for c, text, fin in fixed(ids)]
        ro.record(lm, time.perf_counter() - t, [r.prompt_ids for r in rolls], [len(r.completion_ids) for r in rolls])
        return rolls

    rl_step.sample = sample
    clock = common.StepClock()
    clock.start()
    res = train(recipe, model=model, tokenizer=tok)
    call_s = time.perf_counter() - clock.t0
    clock.stop()
    hist = [json.loads(x) for x in Path(res.metrics_path).read_text().splitlines() if x.strip()]
    steps = [h for h in hist if "loss" in h]
    shutil.rmtree(out, ignore_errors=True)
    return {**timing(clock, ro, consts), "train_call_s": round(call_s, 2), "flop_constants": consts,
            "precision": res.summary.get("precision"), "losses": [h["loss"] for h in steps],
            "rewards": [h.get("reward") for h in steps], "kl": [h.get("kl") for h in steps],
            "grad_norm": [h.get("grad_norm") for h in steps],
            "settings": rl.model_dump(mode="json") | {"lr": recipe.train.lr, "prompts_per_step":
                                                      recipe.train.micro_batch_size}}


# -- TRL ---------------------------------------------------------------------------------------------------------
def run_trl(args: argparse.Namespace, parity: bool = False, cb: bool = False) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tok, path = load(args)
    out = tempfile.mkdtemp(prefix="bench-trl-rl-")
    recipe = make_recipe(args, out, path)
    t, rl = recipe.train, recipe.train.rl
    consts = flop_constants(model, t.lora.r)
    prompts = task_prompts(recipe, tok)
    # instructkit's order, no reshuffle: step k gets the prompts instructkit's step k gets (checked by the parent)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": p.text}], "answers": str(p.answer)}
                            for p in prompts])
    per_step = t.micro_batch_size * rl.num_generations
    cfg = GRPOConfig(
        output_dir=out, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=recipe.seed,
        use_cpu=True, bf16=False, fp16=False,  # the model is loaded in --dtype; no autocast on top
        max_steps=t.max_steps, learning_rate=t.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=t.weight_decay, adam_beta1=t.betas[0], adam_beta2=t.betas[1], adam_epsilon=t.eps,
        max_grad_norm=t.max_grad_norm, optim="adamw_torch_fused", gradient_checkpointing=False,
        shuffle_dataset=False, dataloader_num_workers=0, remove_unused_columns=False, log_completions=False,
        disable_dropout=True,  # instructkit keeps the LM in eval mode in RL (no dropout; SmolLM2 has none anyway)
        use_transformers_continuous_batching=cb,
        **rl_shared.trl_grpo_kwargs(rl, completions_per_step=per_step))
    lora = LoraConfig(r=t.lora.r, lora_alpha=t.lora.alpha, lora_dropout=0.0, target_modules="all-linear",
                      bias="none", task_type="CAUSAL_LM")
    seen: list[dict] = []  # the Trainer's per-step logs

    class Logs(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **k: Any) -> None:
            if logs and "loss" in logs:
                seen.append(dict(logs))

    ro = Rollouts(rl.num_generations)
    clock = common.StepClock()
    clock.start()  # from here as on instructkit's side: the trainer is built (LoRA, data), then trained
    torch.manual_seed(0)  # as instructkit's set_seed(seed) before get_peft_model (TRL also calls set_seed(seed))
    trainer = GRPOTrainer(model=model, reward_funcs=[rl_shared.answer_reward], args=cfg, train_dataset=ds,
                          processing_class=tok, peft_config=lora, callbacks=[Logs()])
    fixed = Fixed(prompts, tok, rl.num_generations, rl.max_new_tokens) if parity else None
    real = trainer._generate_single_turn

    def generate(prompt_ids: list, *a: Any, **k: Any) -> tuple:
        t0 = time.perf_counter()
        if fixed is None:
            comp, logprobs = real(prompt_ids, *a, **k)
        else:  # row r of a prompt's G repeats gets its fixed completion r
            seen: dict[tuple, int] = {}
            comp = []
            for ids in prompt_ids:
                key = tuple(int(x) for x in ids)
                j = seen[key] = seen.get(key, -1) + 1
                comp.append(list(fixed(ids)[j][0]))
            logprobs = None
        ro.record(trainer.model, time.perf_counter() - t0, [list(p) for p in prompt_ids], [len(c) for c in comp])
        return comp, logprobs

    trainer._generate_single_turn = generate
    losses: list[float] = []
    real_loss: Callable = trainer.compute_loss

    def compute_loss(*a: Any, **k: Any) -> Any:  # the unrounded loss (the Trainer's log rounds it)
        loss = real_loss(*a, **k)
        losses.append(float(loss.detach()))
        return loss

    trainer.compute_loss = compute_loss
    trainer.train()
    call_s = time.perf_counter() - clock.t0
    clock.stop()
    shutil.rmtree(out, ignore_errors=True)
    return {**timing(clock, ro, consts), "train_call_s": round(call_s, 2), "flop_constants": consts,
            "trl": trl.__version__, "loss_type": cfg.loss_type, "scale_rewards": cfg.scale_rewards,
            "generation_batch_size": cfg.generation_batch_size, "continuous_batching": cb,
            "precision": f"bf16={cfg.bf16} fp16={cfg.fp16} (no autocast), model {args.dtype}",
            "losses": losses, "rewards": [x.get("reward") for x in seen], "kl": [x.get("kl") for x in seen],
            "grad_norm": [x.get("grad_norm") for x in seen]}


# -- the ceiling ---------------------------------------------------------------------------------------------------
def run_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    model, _, _ = load(args)
    return {"params": sum(p.numel() for p in model.parameters()),
            "ceiling": common.matmul_ceiling(args.dtype, GEMM_SHAPES, tokens=1024, min_s=0.2 if args.quick else 0.4)}


CHILDREN: dict[str, Callable[[argparse.Namespace], dict]] = {
    "instructkit": run_instructkit, "trl": run_trl, "trl_cb": lambda a: run_trl(a, cb=True),
    "parity_instructkit": lambda a: run_instructkit(a, parity=True), "parity_trl": lambda a: run_trl(a, parity=True),
    "ceiling": run_ceiling}
