"""``train.objective: grpo | rloo | ppo`` -> data (prompts), model (policy, reference, value head, rewards),
the loop's hooks (collate, count, the per-step rollout) and what is written after the run.

Order matters for bad input: prompts are read, reward functions imported and every config problem
raised in :meth:`RLObjective.setup_data`, before any model loads.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch

from instructkit.errors import ConfigError

log = logging.getLogger("instructkit.train")


def collate_prompts(rows: list[dict], pad_id: int = 0) -> dict[str, Any]:
    """A micro-batch of prompts: just their indices (the rollout hook turns them into sequences)."""
    return {"pids": [int(r["pid"]) for r in rows]}


class RLObjective:
    def __init__(self, algo: str):
        self.algo = algo
        self.step: Any = None

    # -- 1. prompts, answers, reward specs: everything checked before the model loads ----------------
    def setup_data(self, recipe: Any, tokenizer: Any, *, examples: Any = None, eval_examples: Any = None) -> Any:
        from instructkit.data.tasks.answers import AnswerSpec, parse_answer
        from instructkit.train.build import TrainData
        from instructkit.train.rl import prompts as P
        from instructkit.train.rl.rewards import check_specs

        if examples is not None or eval_examples is not None:
            raise ConfigError(f"train.objective={self.algo} samples its own completions; in-memory examples= "
                              "are SFT only (name prompts with train.rl.task or data.paths)")
        self._tokenizer = tokenizer
        t, rl = recipe.train, recipe.train.rl
        if self.algo == "rloo" and rl.num_generations < 2:
            raise ConfigError("train.objective=rloo needs train.rl.num_generations >= 2 (leave-one-out baseline)")
        if t.eval_every:
            raise ConfigError(f"train.eval_every: objective={self.algo} scores its held-out prompts before and "
                              "after training (train.rl.heldout_prompts); set eval_every: 0")
        skipped: dict = {}
        if rl.task:
            train, heldout, spec = P.from_task(rl.task, rl.template, rl.instruction, rl.train_prompts,
                                               rl.heldout_prompts, recipe.seed)
        else:
            train, heldout, sk = P.from_files(list(recipe.data.paths), rl.instruction, rl.train_prompts,
                                              rl.heldout_prompts, recipe.seed)
            spec, skipped = AnswerSpec(extract="number", compare="numeric"), dict(sk)
        if rl.answer is not None:
            try:
                spec = parse_answer(rl.answer)
            except ValueError as e:
                raise ConfigError(f"train.rl.answer: {e}") from None
        check_specs(rl.rewards, has_answers=all(p.answer is not None for p in train))
        train, long_train = P.tokenize(train, tokenizer, recipe.model.chat_template, recipe.data.max_length)
        heldout, long_held = P.tokenize(heldout, tokenizer, recipe.model.chat_template, recipe.data.max_length)
        if not train:
            raise ConfigError(f"no training prompt fits data.max_length={recipe.data.max_length}")
        self.prompts, self.heldout, self.answer_spec = train, heldout, spec
        rows = [{"pid": i, "input_ids": torch.tensor(p.ids), "labels": torch.tensor([], dtype=torch.long)}
                for i, p in enumerate(train)]
        stats = {"prompts": len(train), "heldout_prompts": len(heldout), "skipped": skipped,
                 "too_long": long_train + long_held, "answer": spec.to_dict(),
                 "rewards": [r.model_dump(exclude_none=True) for r in rl.rewards]}
        return TrainData(rows=rows, eval_rows=[], stats=stats, report={"source": "rl prompts", **stats})

    # -- 2. policy (+ reference, value head, rewards) --------------------------------------------------
    def setup_model(self, recipe: Any, accelerator: Any, model: Any, data: Any) -> tuple[Any, int, int]:
        from instructkit.train.build import setup_model
        from instructkit.train.methods import param_counts
        from instructkit.train.rl.heldout import HeldOut
        from instructkit.train.rl.objective import LossParams, RLLoss, value_head
        from instructkit.train.rl.rewards import build_rewards
        from instructkit.train.rl.step import RLStep

        from instructkit.train import distributed as dist

        t, rl = recipe.train, recipe.train.rl
        if dist.kind(accelerator) in ("FSDP", "DEEPSPEED"):
            raise ConfigError(f"train.objective={self.algo}: rollouts decode on the whole policy module; FSDP and "
                              "DeepSpeed shard it (not supported yet) - run single-process or DDP")
        lora = t.method != "full"
        made: dict[str, Any] = {}

        def wrap(lm: Any) -> Any:
            # the reference: LoRA = the same base with the adapter off (free); full FT = a frozen copy made
            # before the policy is prepared, only when the KL enters the objective
            made["ref"] = copy.deepcopy(lm).eval().requires_grad_(False) if not lora and rl.beta > 0 else None
            has_ref = lora or made["ref"] is not None
            params = LossParams(self.algo, rl.beta, rl.clip_eps_low, rl.clip_eps_high, rl.loss_agg, rl.vf_coef,
                                rl.cliprange_value, has_reference=has_ref, temperature=rl.temperature)
            return RLLoss(lm, params, value_head(lm) if self.algo == "ppo" else None)

        # load, apply the method, wrap, prepare (DDP) and probe: the engine's own path; rollouts are padded
        # rows, never packed
        prepared, _, _ = setup_model(recipe, accelerator, model, wrap=wrap, packing=False)
        wrapper = accelerator.unwrap_model(prepared)
        lm, reference = wrapper.lm, made["ref"]
        trainable, total = param_counts(wrapper)  # with PPO's value head
        if not wrapper.p.has_reference:
            log.info("notice: train.method=full with rl.beta=0: no reference copy is kept, KL is not logged")
        tok = self._tokenizer
        rewards = build_rewards(rl.rewards, answer_spec=self.answer_spec, template=recipe.model.chat_template,
                                device=str(accelerator.device))
        from pathlib import Path
        run_dir = Path(recipe.resolved_output_dir())
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.step = RLStep(wrapper, tok, self.prompts, rewards, rl, algo=self.algo, seed=recipe.seed,
                           device=accelerator.device, pad_id=pad, reference=reference, run_dir=run_dir,
                           main=accelerator.is_main_process)
        self.heldout_eval = HeldOut(self.heldout, rewards, rl, tok, run_dir)
        if accelerator.is_main_process:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not t.resume:
                (run_dir / "rl_samples.jsonl").unlink(missing_ok=True)
            self.heldout_eval.before(lm)  # the starting policy, before any step (reused on resume)
        data.stats["reference"] = ("adapter disabled (LoRA)" if lora else
                                   "frozen copy" if reference is not None else "none (beta=0)")
        return prepared, trainable, total

    # -- 3. loop hooks ---------------------------------------------------------------------------------
    def loop_hooks(self) -> dict[str, Any]:
        from instructkit.train.rl.losses import COUNTS
        return {"collate": collate_prompts, "count_fn": COUNTS[self.step.w.p.agg], "prepare_step": self.step,
                "updates_per_step": self.step.rl.num_iterations, "reorder": self.step.reorder}

    # -- 4. after the run ----------------------------------------------------------------------------
    def finish(self, recipe: Any, accelerator: Any, wrapper: Any) -> dict[str, Any]:
        lm = accelerator.unwrap_model(wrapper).lm
        out: dict[str, Any] = {"rl": {"objective": self.algo, "reward_failures": dict(self.step.failures),
                                      "last_samples": self.step.last_samples}}  # also RUN/rl_samples.jsonl, TB
        if accelerator.is_main_process:
            h = out["rl"]["heldout"] = self.heldout_eval.after(lm)
            for name, m in ((h or {}).get("metrics") or {}).items():
                log.info("held-out %s (n=%d, greedy): before %.4f, after %.4f, delta %+.4f [95%% CI %+.4f, %+.4f]",
                         name, h["n"], m["before"], m["after"], m["delta"], *m["delta_ci"])
            if self.step.failures:
                log.info("reward failures (scored on_error): %s", dict(self.step.failures))
        return out


def make(algo: str) -> Any:
    return lambda: RLObjective(algo)
