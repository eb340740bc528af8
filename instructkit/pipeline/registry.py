"""The stage registry: one line per stage kind. Stage authors add their line here (small edit).

A stage is a plain function ``fn(ctx: StageContext, cfg) -> dict`` of JSON values (paths as str inside
``ctx.out``). ``cfg`` is the recipe with the stage's ``config:`` overlay applied, or - when the kind has its
own config type - that type validated from ``config:``. Functions and config types are named by import
path and imported only when needed, so the registry costs nothing at start-up and imports nothing back up.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from instructkit.errors import ConfigError


@dataclass(frozen=True)
class Stage:
    fn: str                          # "module:function"
    reads: tuple[str, ...] = ()      # recipe sections that enter the fingerprint (and that fn may read)
    config: str | None = None        # "module:Class": the kind's own config type; None = recipe overlay
    outputs: tuple[str, ...] = ()    # output keys fn always returns (references are checked before running)
    files: str | None = None         # "module:function": cfg -> external paths read (stamped in the fingerprint)
    version: int = 1                 # bump when fn's output changes for the same inputs (invalidates caches)
    doc: str = ""

    def function(self) -> Callable[..., dict]:
        return _load(self.fn)

    def config_type(self) -> Any:
        return _load(self.config) if self.config else None

    def external_files(self, cfg: Any) -> list[str]:
        return list(_load(self.files)(cfg)) if self.files else []


def _load(ref: str) -> Any:
    mod, _, attr = ref.partition(":")
    return getattr(importlib.import_module(mod), attr)


_B = "instructkit.pipeline.builtin"

STAGES: dict[str, Stage] = {
    "mix": Stage(f"{_B}:mix", reads=("seed", "mix"), outputs=("mixture", "manifest", "examples"),
                 files=f"{_B}:mix_files", doc="Mix tasks into one SFT file (FLAN/T0 caps, held-out clusters)."),
    "train": Stage(f"{_B}:train", reads=("seed", "model", "data", "train"), outputs=("model", "final_loss", "summary"),
                   files=f"{_B}:train_files",
                   doc="Train (SFT/LoRA/QLoRA/Muppet/DPO/RL); inputs: data (file or list), model (start from), "
                       "reward_model (RL rewards of kind model)."),
    "eval": Stage(f"{_B}:evaluate", reads=("model", "eval"), outputs=("results", "scores", "model"),
                  doc="Evaluate a model (input 'model', else eval.model / model.name_or_path) on eval.tasks."),
    "eval.held_out": Stage(f"{_B}:held_out", reads=("seed", "model"),
                           config="instructkit.config.pipeline:HeldOutConfig", outputs=("report", "clusters"),
                           doc="Held-out report (FLAN/T0): base / tuned / oracle on held-out and seen clusters."),
    "synth.preferences": Stage("instructkit.synth.preferences:stage", reads=(),
                               config="instructkit.synth.preferences:PreferencesConfig",
                               outputs=("data", "report", "pairs"), files="instructkit.synth.preferences:prompt_files",
                               doc="RLAIF pairs: sample N answers per prompt (input 'model'), rank by judge/reward."),
    "eval.winrate": Stage("instructkit.eval.winrate:stage", reads=(),
                          config="instructkit.eval.winrate:WinRateConfig",
                          outputs=("report", "results", "scores"), files="instructkit.eval.winrate:prompt_files",
                          doc="Judge win rate (bootstrap CI) of input 'model' against input 'baseline'."),
    "rl.report": Stage("instructkit.train.rl.report:stage", reads=("name", "description"), outputs=("report", "scores"),
                       doc="Held-out before/after of RL training stages (one per seed): paired 95% CIs, pooled."),
    "report": Stage(f"{_B}:report", reads=("name", "description"), outputs=("report",),
                    doc="One table of every input stage's results (markdown + JSON)."),
    "tools.convert_gsm8k": Stage("instructkit.tools.stage:convert_gsm8k", reads=(),
                                 config="instructkit.tools.stage:ConvertGsm8kConfig", outputs=("data", "report"),
                                 files="instructkit.tools.stage:convert_files",
                                 doc="GSM8K <<a=b>> calculator annotations -> tool-call conversations."),
    "tools.gsm8k_eval": Stage("instructkit.tools.stage:gsm8k_eval", reads=("model",),
                              config="instructkit.tools.stage:Gsm8kToolEvalConfig",
                              outputs=("results", "report", "scores", "model"),
                              files="instructkit.tools.stage:eval_files",
                              doc="GSM8K test subset with and without the calculator in the tool loop."),
    "tools.people_qa": Stage("instructkit.tools.stage:people_qa", reads=("seed",),
                             config="instructkit.tools.stage:PeopleQaConfig",
                             outputs=("corpus", "index", "train", "test"),
                             doc="A people-directory corpus, its BM25 index, search-tool conversations, test questions."),
    "tools.retrieval_eval": Stage("instructkit.tools.stage:retrieval_eval", reads=("model",),
                                  config="instructkit.tools.stage:RetrievalEvalConfig",
                                  outputs=("results", "report", "scores", "model"),
                                  doc="Retrieval QA with and without the search tool in the loop."),
    # synth (issue #11): own config types; outputs data (messages JSONL) + report; the cache makes them resumable
    **{f"synth.{k}": Stage(f"instructkit.synth.stage:{k}_stage", reads=(), config=f"instructkit.config.synth:{c}",
                           outputs=("data", "report", "kept"), files="instructkit.synth.stage:synth_files", doc=d)
       for k, c, d in [("self_instruct", "SelfInstructConfig", "Self-instruct (Alpaca/paper) with ROUGE-L + rule filters."),
                       ("evol", "EvolConfig", "Evol-instruct: M rounds, in-depth/in-breadth, four eliminations."),
                       ("magpie", "MagpieConfig", "Magpie: sample after the template's own pre-query."),
                       ("multiturn", "MultiTurnConfig", "WizardVicuna multi-turn expansion (input: instructions)."),
                       ("clean", "CleanConfig", "ShareGPT cleaning: HTML, roles, language, dedup, token splitting.")]},
}


def get(kind: str, stage: str) -> Stage:
    try:
        return STAGES[kind]
    except KeyError:
        raise ConfigError(f"stage {stage!r}: unknown kind {kind!r} (registered: {', '.join(sorted(STAGES))})") \
            from None
