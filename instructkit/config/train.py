"""The ``train:`` config section. Owned by the training stage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section
from instructkit.config.rl import RLSection


class LoraSection(Section):
    r: int = Field(16, ge=1, description="LoRA rank (QLoRA/Guanaco: 64).")
    alpha: float = Field(32.0, description="LoRA scaling alpha (update scaled by alpha / r; Guanaco: 16).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input (Guanaco: 0.05/0.1).")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names (suffix match) that get adapters, or ['all-linear']. A name that matches "
                    "no module is a config error raised before training.")


class DPOSection(Section):
    loss: Literal["sigmoid", "ipo", "simpo", "orpo"] = Field(
        "sigmoid", description="Preference loss of objective=dpo: sigmoid (DPO), ipo, simpo (reference-free, "
                               "length-normalised), orpo (reference-free, NLL + odds ratio). See docs/preference.md.")
    beta: Optional[float] = Field(None, gt=0, description="DPO/IPO beta (strength of the pull to the reference), "
                                  "SimPO beta (reward scale), ORPO lambda (weight of the odds-ratio term). Unset = "
                                  "the loss's own default from its paper: sigmoid 0.1, ipo 0.1, simpo 2.0 (SimPO's "
                                  "beta=2.0, gamma/beta=0.5), orpo 0.1.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="sigmoid only: assumed share of flipped "
                                                                    "labels (conservative DPO).")
    simpo_gamma: Optional[float] = Field(None, description="simpo only: target reward margin gamma, in "
                                         "-log sigmoid(beta * (avg logp_c - avg logp_r) - gamma). Unset = 0.5 * "
                                         "beta (SimPO's gamma_beta_ratio 0.5: 1.0 at beta 2.0).")
    disable_dropout: bool = Field(True, description="Turn every dropout of the policy (model, attention, LoRA) "
                                                    "off, as TRL does: with dropout on, the policy's log-probs "
                                                    "are noisy while the reference's (eval mode) are not, so "
                                                    "the log-ratio is biased and step 0 is not log 2.")
    ref_cache_dir: Optional[str] = Field(None, description="Where reference log-probs are cached (default "
                                                           "~/.cache/instructkit/refcache).")
    falling_chosen_window: int = Field(5, ge=0, description="Warn when the chosen log-prob falls at this many "
                                                            "consecutive log steps (0 = never).")

    def resolved(self) -> dict[str, float]:
        """beta and gamma as trained: the per-loss defaults filled in (unset fields follow ``loss``)."""
        beta = self.beta if self.beta is not None else BETA_DEFAULTS[self.loss]
        gamma = self.simpo_gamma if self.simpo_gamma is not None else SIMPO_GAMMA_BETA_RATIO * beta
        return {"beta": beta, "simpo_gamma": gamma if self.loss == "simpo" else 0.0}


#: train.dpo.beta when unset, per loss: DPO (Rafailov et al.) and IPO as TRL; SimPO (Meng et al. 2024, its
#: released configs: beta 2.0, gamma_beta_ratio 0.5); ORPO (Hong et al. 2024: lambda 0.1)
BETA_DEFAULTS = {"sigmoid": 0.1, "ipo": 0.1, "simpo": 2.0, "orpo": 0.1}
SIMPO_GAMMA_BETA_RATIO = 0.5


class MuppetSection(Section):
    min_tasks: int = Field(2, ge=1, description="Every packed row (so every optimizer step) holds examples of at "
                                                "least this many tasks (Muppet's heterogeneous batches; needs "
                                                "packing).")
    scale_classification: bool = Field(True, description="Weight classification examples by 1/log(n_classes), so "
                                                         "a uniform guess costs 1.0 in every task.")
    generative_weight: float = Field(1.0, ge=0.0, description="Loss weight of generative (non-classification) "
                                                              "examples.")
    n_classes: dict[str, int] = Field(default_factory=dict, description="Classes per task id, overriding what is "
                                                                        "derived (0 = generative).")
    max_classes: int = Field(10, ge=2, description="Data without task templates (e.g. T0 files): a (task, "
                                                   "template) with at most this many distinct targets, each seen "
                                                   "twice, counts as classification.")


class TrainConfig(Section):
    objective: Literal["sft", "dpo", "reward", "grpo", "rloo", "ppo"] = Field(
        "sft", description="sft: next-token loss on assistant turns; dpo: preference optimisation on pairs "
                           "(train.dpo.*); reward: Bradley-Terry reward model on pairs. dpo/reward read "
                           "preference files from data.paths (docs/preference.md). grpo/rloo/ppo: online RL "
                           "with rollouts from the policy (train.rl.*, docs/rl.md).")
    dpo: DPOSection = Field(default_factory=DPOSection, description="Settings of objective=dpo.")
    rl: RLSection = Field(default_factory=RLSection, description="Settings of objective=grpo/rloo/ppo.")
    method: Literal["full", "lora", "dora", "qlora"] = Field(
        "full", description="full fine-tuning; LoRA / DoRA adapters (peft); QLoRA = NF4 4-bit base + LoRA.")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data (Alpaca: 3). Fractions allowed.")
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    micro_batch_size: int = Field(1, ge=1, description="Rows per device per forward (packed rows or padded examples).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    packing: bool = Field(True, description="Pack examples into rows of pack_tokens (best-fit decreasing, per-example "
                                            "positions and attention); false = one padded example per row.")
    pack_tokens: int = Field(2048, ge=8, description="Token budget of one packed row (must be >= data.max_length).")
    optimizer: Literal["adamw", "adafactor", "paged_adamw"] = Field(
        "adamw", description="adamw (torch), adafactor (constant LR, no relative step; Flan 2022), paged_adamw "
                             "(bitsandbytes, CUDA only; falls back to adamw on CPU with a notice; Guanaco).")
    weight_decay: float = Field(0.0, ge=0.0, description="Decoupled weight decay (not applied to biases/norms).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    eps: float = Field(1e-8, description="Adam epsilon.")
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning-rate schedule after warmup (Alpaca: cosine; Flan 2022: constant).")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps spent warming up linearly.")
    warmup_steps: Optional[int] = Field(None, ge=0, description="Warmup steps (overrides warmup_ratio).")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Clip the global gradient norm (0 = no clipping).")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward (Vicuna; saves memory).")
    loss_chunk_size: int = Field(
        4096, ge=0, description="Trained tokens per chunk of the LM-head + cross-entropy (recomputed in backward so "
                                "fp32 logits of a whole row are never held); 0 = one chunk.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA/DoRA/QLoRA adapter settings.")
    muppet: Optional[MuppetSection] = Field(None, description="Muppet multi-task pre-finetuning: heterogeneous "
                                                             "rows and per-task loss scaling (train/muppet.py).")
    eval_every: int = Field(0, ge=0, description="Evaluate every N optimizer steps (0 = only at the end).")
    best_metric: str = Field("eval_loss", description="Metric that picks the best checkpoint (eval_loss or a key "
                                                      "returned by the eval_fn hook, prefixed eval_).")
    best_mode: Literal["min", "max"] = Field("min", description="Whether a smaller or larger best_metric is better.")
    save_every: int = Field(0, ge=0, description="Write a checkpoint every N optimizer steps (0 = only at the end).")
    keep_last: int = Field(2, ge=1, description="How many step checkpoints to keep (the best one is kept apart).")
    resume: Optional[str] = Field(None, description="auto = the latest checkpoint in the run folder; or a checkpoint path.")
    log_every: int = Field(10, ge=1, description="Log loss/lr/throughput every N optimizer steps.")
    tensorboard: bool = Field(True, description="Also write TensorBoard events under RUN/tb.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list, description="Experiment trackers (through accelerate) that get the config, per-step "
        "metrics, data report and summary; offline by default (W&B offline, MLflow file store RUN/mlruns, trackio "
        "local RUN/trackio). pip install 'instructkit[trackers]'.")
    progress: bool = Field(True, description="Show a progress bar (main process only).")
