"""The ``train.rl:`` section: online RL objectives (``train.objective: grpo | rloo | ppo``). Owned by the
training stage (``instructkit/train/rl``); see docs/rl.md."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from instructkit.config.base import Section


class RewardSpec(Section):
    kind: Literal["answer", "format", "model", "function"] = Field(
        ..., description="answer: the task's declared extraction + comparison against the gold answer (1/0); "
                         "format: 1 when the completion matches `pattern` (re.search); model: a reward model "
                         "folder (train.objective=reward RUN/model); function: a user function `fn`.")
    weight: float = Field(1.0, description="Weight of this reward in the total (the sum of weighted rewards).")
    name: Optional[str] = Field(None, description="Name in the logs (default: the kind, or the function name).")
    pattern: Optional[str] = Field(None, description="format: the regular expression a well-formed completion has.")
    path: Optional[str] = Field(None, description="model: the reward model folder (in a pipeline, or the train "
                                                  "stage's input `reward_model`).")
    fn: Optional[str] = Field(None, description="function: dotted path 'package.module:function'; called as "
                                                "fn(prompts, completions, answers=...) -> list of floats (TRL's "
                                                "signature); checked to import before the model loads.")
    on_error: float = Field(0.0, description="Score given to a completion whose reward raised or returned a "
                                             "non-number (each failure is counted by reason, never fatal).")

    @model_validator(mode="after")
    def _needs(self) -> "RewardSpec":
        need = {"format": "pattern", "function": "fn"}.get(self.kind)  # model: path may come from a stage input
        if need and not getattr(self, need):
            raise ValueError(f"reward kind {self.kind} needs `{need}`")
        if self.kind == "format":
            import re
            try:
                re.compile(self.pattern or "")
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression ({e})") from None
        return self


class RLSection(Section):
    # -- prompts -----------------------------------------------------------------------------------
    task: Optional[str] = Field(None, description="Prompts (and gold answers) from this task (suite id or YAML "
                                                  "path): its train split for rollouts, its eval split held out. "
                                                  "None: prompt files in data.paths (fields prompt/messages/"
                                                  "instruction + optional answer).")
    template: Optional[str] = Field(None, description="Template id of the task (default: its first non-inverted one).")
    answer: Optional[dict] = Field(None, description="Override the task's answer scoring: {extract, compare, "
                                                     "pattern} (e.g. {extract: number, compare: numeric}: the last "
                                                     "number; {extract: math, compare: math}: math-verify).")
    instruction: str = Field("", description="Text appended to every prompt (e.g. how to state the final answer).")
    train_prompts: int = Field(256, ge=1, description="Prompts used for rollouts (at most).")
    heldout_prompts: int = Field(64, ge=0, description="Held-out prompts scored before and after training "
                                                       "(greedy); 0 = none.")
    # -- rollouts ----------------------------------------------------------------------------------
    num_generations: int = Field(4, ge=1, description="G: completions sampled per prompt (one prefill shared).")
    max_new_tokens: int = Field(128, ge=1, description="Longest completion (rollouts and held-out scoring).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the rollouts.")
    rollout_batch_size: int = Field(64, ge=1, description="Sequences decoded together by the engine.")
    num_iterations: int = Field(1, ge=1, description="mu (TRL's name; PPO's epochs): optimizer updates on each "
                                                     "step's rollouts. 1: one update, on policy (ratio 1). > 1: old "
                                                     "log-probs from a no-grad forward at rollout time, the step's "
                                                     "micro-batches reused mu times in a seeded order: the clip acts. "
                                                     "train.max_steps counts rollout steps (mu updates each).")
    # -- loss ----------------------------------------------------------------------------------------
    beta: float = Field(0.04, ge=0, description="KL coefficient: grpo adds beta * k3 KL to the loss; rloo "
                                                "subtracts beta * KL(sequence) from the reward; ppo puts -beta * KL "
                                                "per token in the reward (InstructGPT). KL is logged even at 0.")
    clip_eps_low: float = Field(0.2, ge=0, description="Policy-ratio clip below 1 (PPO/GRPO epsilon).")
    clip_eps_high: float = Field(0.2, ge=0, description="Policy-ratio clip above 1 (DAPO's clip-higher: 0.28).")
    loss_agg: Literal["token", "sequence", "dr_grpo"] = Field(
        "token", description="token: mean over all completion tokens of the step (DAPO); sequence: mean per "
                             "completion, then over completions (original GRPO); dr_grpo: sum over tokens / "
                             "(completions * max_new_tokens) (Dr. GRPO, no length bias).")
    scale_rewards: bool = Field(True, description="grpo: divide group-centred rewards by the group std (false = "
                                                  "Dr. GRPO).")
    # -- ppo ---------------------------------------------------------------------------------------
    vf_coef: float = Field(0.1, ge=0, description="ppo: weight of the value loss.")
    cliprange_value: float = Field(0.2, ge=0, description="ppo: clip of the value update around the rollout value.")
    gamma: float = Field(1.0, ge=0, le=1, description="ppo: discount.")
    lam: float = Field(0.95, ge=0, le=1, description="ppo: GAE lambda.")
    whiten_advantages: bool = Field(True, description="ppo: normalise advantages over the step's tokens.")
    # -- rewards and reporting -------------------------------------------------------------------------
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(kind="answer")],
                                      description="Reward functions, summed with their weights.")
    log_samples: int = Field(4, ge=0, description="Completions (with rewards) kept per logged step for the "
                                                  "TensorBoard text table and RUN/rl_samples.jsonl.")
