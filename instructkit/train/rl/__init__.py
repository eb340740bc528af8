"""Online RL on the training engine: ``train.objective: grpo | rloo | ppo`` (docs/rl.md).

The loop, optimizer, checkpoints, resume, metrics and Ctrl-C handling are the SFT engine's
(``train/loop.py``); what differs is a per-step hook that turns the step's prompts into rollouts with the
policy's current weights (``rollout.py``, through :class:`instructkit.lm.engine.Engine`), scores them
(``rewards.py``), computes advantages (``advantages.py``) and a loss wrapper (``objective.py``,
``losses.py``). Set-up is in ``setup.py``; held-out scoring before/after in ``heldout.py``.

Imports are lazy (torch): see the submodules.
"""
