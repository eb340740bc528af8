"""instructkit: instruction tuning of causal language models.

The pipeline is data -> synth -> train -> eval -> serve; each stage is a subpackage.
"""

__version__ = "0.1.0"

import warnings as _warnings

# peft (0.21) reads transformers' deprecated aliases `is_gradient_checkpointing` /
# `gradient_checkpointing_enable` whenever it wraps or loads an adapter: a FutureWarning on every LoRA run,
# export and adapter load that users can do nothing about. Only these two messages are silenced.
_warnings.filterwarnings("ignore", message=r"`(is_gradient_checkpointing|gradient_checkpointing_enable)` is "
                         r"deprecated", category=FutureWarning)
