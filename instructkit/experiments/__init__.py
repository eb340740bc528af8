"""Experiments built from the pipeline's stages: the FLAN held-out-cluster experiment with its controls
(base, tuned, oracle) and the T0 -> BIG-bench zero-shot experiment. Library functions only; the demo
command and the recipe runner call the same steps."""
