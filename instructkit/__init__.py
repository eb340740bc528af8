"""instructkit: instruction tuning of causal language models.

The pipeline is data -> synth -> train -> eval -> serve; each stage is a subpackage.
"""

__version__ = "0.1.0"
