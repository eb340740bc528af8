"""Preference tuning on the training engine: DPO family (``train.objective: dpo``) and a Bradley-Terry
reward model (``train.objective: reward``). Same loop, packing, checkpoints and resume as SFT; what
differs is chosen in :data:`instructkit.train.preference.setup.OBJECTIVES`.

Imports are lazy (torch): see the submodules.
"""
