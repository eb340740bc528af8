"""The loop's per-step hook for RL: the step's prompts -> rollouts -> rewards -> advantages -> micro-batches.

Called by ``train/loop.py`` once per step, before any forward of the step, with the prompt micro-batches
the data loader gave; every completion is sampled with the weights of that moment (on policy). With
``rl.num_iterations`` = mu > 1 the loop makes mu optimizer updates on the step's micro-batches (pass k > 0
in the order :meth:`RLStep.reorder` gives); their old log-probs are then taken here, by a no-grad forward
of the rollout policy, so the ratio moves away from 1 after the first update and the clip acts. Rewards of all completions of the step are computed together; GRPO/RLOO advantages need only
each prompt's own group (a prompt's G completions always sit in the same micro-batch), PPO's are
whitened over all tokens of the step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from instructkit.train.rl import advantages as A
from instructkit.train.rl.rewards import Sample, score_all
from instructkit.train.rl.rollout import (Rollout, build_batch, reference_mode, rollout_logprobs, sample,
                                          step_seed)

log = logging.getLogger("instructkit.train")


class RLStep:
    def __init__(self, wrapper: Any, tokenizer: Any, prompts: Sequence[Any], rewards: Sequence[Any], rl: Any, *,
                 algo: str, seed: int, device: Any, pad_id: int, reference: Any = None,
                 run_dir: Path | None = None, main: bool = True):
        self.w, self.tok, self.prompts, self.rewards, self.rl = wrapper, tokenizer, prompts, rewards, rl
        self.algo, self.seed, self.device, self.pad_id, self.ref = algo, seed, device, pad_id, reference
        self.run_dir, self.main = run_dir, main
        self.failures: dict[str, int] = {}
        self.last_samples: list[dict] = []
        self.last_step = 0
        self._tb = None
        wrapper.on_log = self.write_samples

    def __call__(self, micro: list[dict], step: int) -> list[dict]:
        rl, g = self.rl, self.rl.num_generations
        lm = self.w.lm
        groups = [[int(i) for i in mb["pids"]] for mb in micro]
        flat = [(i, self.prompts[i].ids) for grp in groups for i in grp]
        rolls = sample(lm, self.tok, flat, g=g, max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
                       top_p=rl.top_p, seed=step_seed(self.seed, step), batch_size=rl.rollout_batch_size)
        samples = [Sample(self.prompts[r.prompt_index].text, r.text, self.prompts[r.prompt_index].answer,
                          self.prompts[r.prompt_index].choices) for r in rolls]
        scores = score_all(self.rewards, samples)
        self._record(step, rolls, scores)
        out, k = [], 0
        for grp in groups:
            n = len(grp) * g
            out.append(self._micro(rolls[k:k + n], scores.total[k:k + n]))
            k += n
        if self.algo == "ppo" and self.rl.whiten_advantages:  # over all tokens of the step
            adv = A.whiten(torch.cat([b["adv"] for b in out]))
            s = 0
            for b in out:
                b["adv"], s = adv[s:s + len(b["adv"])], s + len(b["adv"])
        return [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in b.items()} for b in out]

    def reorder(self, micro: list[dict], step: int, k: int) -> list[dict]:
        """Pass ``k`` (> 0) of ``rl.num_iterations`` over a step's micro-batches: a permutation seeded from
        (seed, step, k), so a resumed run takes them in the same order."""
        g = torch.Generator().manual_seed(step_seed(self.seed, step) + 7919 * k)
        return [micro[i] for i in torch.randperm(len(micro), generator=g).tolist()]

    def _micro(self, rolls: list[Rollout], total: list[float]) -> dict:
        rl, g = self.rl, self.rl.num_generations
        b = build_batch(rolls, self.pad_id, rl.max_new_tokens)
        dev = {k: v.to(self.device) for k, v in b.items()}
        seg = b["seg"]
        need_ref = self.w.p.has_reference
        if need_ref:
            with reference_mode(self.w.lm, self.ref) as ref_lm:
                b["ref_logp"] = rollout_logprobs(ref_lm, dev, temperature=rl.temperature)[0].cpu()
        old = vals = None
        if self.algo == "ppo" or (self.algo == "rloo" and rl.beta > 0) or rl.num_iterations > 1:
            old, vals = rollout_logprobs(self.w.lm, dev, self.w.value_head if self.algo == "ppo" else None,
                                         temperature=rl.temperature)
            old, b["old_logp"] = old.cpu(), old.cpu()
        r = torch.tensor(total, dtype=torch.float32)
        if self.algo == "grpo":
            adv_seq = A.grpo_advantages(r.view(-1, g), scale=rl.scale_rewards).flatten()
            b["adv"] = adv_seq[seg]
        elif self.algo == "rloo":
            if rl.beta > 0 and need_ref:  # KL of each completion, subtracted from its reward
                kl_seq = torch.zeros(len(rolls)).index_add_(0, seg, old - b["ref_logp"])
                r = r - rl.beta * kl_seq
            b["adv"] = A.rloo_advantages(r.view(-1, g)).flatten()[seg]
        else:  # ppo: per-token KL penalty + score on the last token, GAE on the rollout values
            vals = vals.cpu()
            ref = b["ref_logp"] if need_ref else old
            adv, ret = torch.zeros_like(old), torch.zeros_like(old)
            for i in range(len(rolls)):
                idx = (seg == i).nonzero()[:, 0]
                if len(idx) == 0:
                    continue
                tr = A.ppo_token_rewards(float(r[i]), old[idx], ref[idx], rl.beta)
                adv[idx], ret[idx] = A.gae(tr, vals[idx], rl.gamma, rl.lam)
            b.update(adv=adv, returns=ret, old_values=vals)
        return b

    def _record(self, step: int, rolls: list[Rollout], scores: Any) -> None:
        m, g = self.w.metrics, self.rl.num_generations
        for name, vals in scores.per_fn.items():
            t = torch.tensor(vals)
            m.add(f"reward/{name}", float(t.sum()), len(vals))
            m.add(f"reward/{name}_std", float(t.std()) if len(vals) > 1 else 0.0)
        tot = torch.tensor(scores.total)
        m.add("reward", float(tot.sum()), len(tot))
        m.add("reward_std", float(tot.std()) if len(tot) > 1 else 0.0)
        m.add("zero_var_groups", A.zero_variance_share(tot.view(-1, g)))
        m.add("response_length", sum(len(r.completion_ids) for r in rolls), len(rolls))
        m.add("truncated", sum(r.finish_reason == "length" for r in rolls), len(rolls))
        fails = sum(scores.failures.values())
        m.add("reward_failures", fails)
        for k, v in scores.failures.items():
            if k not in self.failures:
                log.warning("reward failed (scored as configured, counted): %s", k)
            self.failures[k] = self.failures.get(k, 0) + v
        keep = self.rl.log_samples
        self.last_step = step + 1
        self.last_samples = [{"step": step + 1, "prompt": self.prompts[r.prompt_index].text, "completion": r.text,
                              "reward": scores.total[i], **{f"reward/{n}": v[i] for n, v in scores.per_fn.items()}}
                             for i, r in enumerate(rolls[:keep])]

    def write_samples(self) -> None:
        """At each logged step: the latest step's first completions to RUN/rl_samples.jsonl + TensorBoard."""
        if not (self.main and self.run_dir is not None and self.last_samples):
            return
        with (self.run_dir / "rl_samples.jsonl").open("a") as f:
            for s in self.last_samples:
                f.write(json.dumps(s) + "\n")
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:
                self._tb = False
        if self._tb:
            rows = ["| reward | prompt | completion |", "|---|---|---|"] + [
                f"| {s['reward']:.3f} | {_cell(s['prompt'])} | {_cell(s['completion'])} |" for s in self.last_samples]
            self._tb.add_text("rl/samples", "\n".join(rows), self.last_step)
            self._tb.flush()


def _cell(text: str, n: int = 400) -> str:
    return text[:n].replace("|", "\\|").replace("\n", " ")
