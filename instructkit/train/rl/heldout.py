"""Held-out prompts scored before and after RL, paired: greedy completions through the same engine, each
scored by the run's rewards. The report gives the mean of each (the ``answer`` reward is the accuracy),
the paired delta with its 95% bootstrap interval (``instructkit.stats.paired_bootstrap``) and, when a
reward model is among the rewards, the reward model's win rate of after over before (ties count half).

``RUN/heldout.json`` holds every item (id, prompt, both completions, both scores): reports over several
seeds pool them (``rl/report.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from instructkit.train.rl.rewards import Sample, score_all
from instructkit.train.rl.rollout import sample


class HeldOut:
    def __init__(self, prompts: Sequence[Any], rewards: Sequence[Any], rl: Any, tokenizer: Any, run_dir: Path):
        self.prompts, self.rewards, self.rl, self.tok, self.run_dir = list(prompts), list(rewards), rl, tokenizer, run_dir
        self._before: dict | None = None

    def score(self, lm: Any) -> dict[str, Any]:
        rolls = sample(lm, self.tok, [(i, p.ids) for i, p in enumerate(self.prompts)], g=1,
                       max_new_tokens=self.rl.max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                       batch_size=self.rl.rollout_batch_size)
        sc = score_all(self.rewards, [Sample(p.text, r.text, p.answer, p.choices) for p, r in zip(self.prompts, rolls)])
        return {"completions": [r.text for r in rolls], "per_fn": sc.per_fn, "total": sc.total}

    def before(self, lm: Any) -> None:
        if not self.prompts:
            return
        path = self.run_dir / "heldout_before.json"
        ids = [p.id for p in self.prompts]
        if path.is_file():  # a resumed run: the starting policy was scored by the first session
            saved = json.loads(path.read_text())
            if saved.get("ids") == ids:
                self._before = saved
                return
        self._before = {"ids": ids, **self.score(lm)}
        path.write_text(json.dumps(self._before))

    def after(self, lm: Any) -> dict[str, Any] | None:
        if not self.prompts or self._before is None:
            return None
        from instructkit.stats import bootstrap_ci, paired_bootstrap

        a, b = self._before, self.score(lm)
        report: dict[str, Any] = {"n": len(self.prompts), "metrics": {}}
        for name in a["per_fn"]:
            x, y = a["per_fn"][name], b["per_fn"][name]
            d, lo, hi = paired_bootstrap(x, y)
            report["metrics"][name] = {"before": bootstrap_ci(x)[0], "after": bootstrap_ci(y)[0],
                                       "delta": d, "delta_ci": [lo, hi]}
        name = next((r.name for r in self.rewards if r.kind == "model"), None)
        if name is not None:
            wins = [1.0 if y > x else 0.5 if y == x else 0.0
                    for x, y in zip(a["per_fn"][name], b["per_fn"][name])]
            m, lo, hi = bootstrap_ci(wins)
            report["win_rate_vs_start"] = {"by": name, "value": m, "ci": [lo, hi]}
        items = [{"id": i, "prompt": p.text, "answer": p.answer, "before": ca, "after": cb,
                  "scores_before": {n: a["per_fn"][n][k] for n in a["per_fn"]},
                  "scores_after": {n: b["per_fn"][n][k] for n in b["per_fn"]}}
                 for k, (i, p, ca, cb) in enumerate(zip(a["ids"], self.prompts, a["completions"], b["completions"]))]
        (self.run_dir / "heldout.json").write_text(json.dumps({**report, "items": items}, indent=1))
        return report
