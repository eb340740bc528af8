"""T0 -> BIG-bench: train on the T0 mixture, evaluate zero-shot on BIG-bench tasks it does not contain.

Sanh et al. (2022) hold out BIG-bench tasks entirely (no dataset of the T0 training mixture is one of
them). Here the mixture comes from prompt/completion files (``mix.t0_dirs``, subsampled with
``mix.total`` to the machine's scale) and the held-out tasks from a folder of BIG-bench ``task.json``
files (the ``bigbench`` sdist on PyPI, never imported). Controls as in the FLAN experiment: the
untuned model, the T0-tuned model, and an oracle trained on the BIG-bench tasks' own training splits.

Held-out tasks are named in the recipe's ``eval.tasks`` as ``bigbench:NAME`` (``bigbench:parent/sub``
for subtasks); the folder comes from the ``bigbench_dir`` argument or ``$INSTRUCTKIT_BIGBENCH``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from instructkit.errors import ConfigError

PREFIX = "bigbench:"
#: multiple-choice T0 held-out tasks with >= 500 distinct examples (enough for 250 evaluated + an oracle)
DEFAULT_TASKS = ["strategyqa", "winowhy", "vitaminc_fact_verification", "movie_dialog_same_or_different"]


def bigbench_names(refs: list[str]) -> list[str]:
    names = [r[len(PREFIX):] for r in refs if r.startswith(PREFIX)]
    return names or list(DEFAULT_TASKS)


def resolve_bigbench_dir(bigbench_dir: str | Path | None) -> Path:
    d = bigbench_dir or os.environ.get("INSTRUCTKIT_BIGBENCH")
    if not d:
        raise ConfigError("no BIG-bench folder: pass bigbench_dir or set INSTRUCTKIT_BIGBENCH to the unpacked "
                          "sdist (pip download --no-deps --no-binary :all: bigbench; tar xzf bigbench-*.tar.gz)")
    if not Path(d).is_dir():
        raise ConfigError(f"BIG-bench folder not found: {d}")
    return Path(d)


def run_t0_bigbench(recipe: Any, out: str | Path, *, bigbench_dir: str | Path | None = None,
                    tasks: list[str] | None = None, eval_n: int = 250, oracle: bool = True,
                    oracle_per_task: int = 300, oracle_train: dict | None = None, console: Any = None,
                    command: str | None = None, **report_kw: Any) -> dict:
    """Prepare the BIG-bench tasks, then :func:`~instructkit.experiments.heldout.run_heldout` with them
    as the held-out set (the T0 mixture holds out nothing itself)."""
    from instructkit.data.tasks.bigbench import prepare_bigbench
    from instructkit.experiments.heldout import run_heldout

    if recipe.mix is None or not recipe.mix.t0_dirs:
        raise ConfigError(f"recipe {recipe.name!r}: the T0 experiment needs mix.t0_dirs (the T0 prompt files)")
    names = tasks or bigbench_names(recipe.eval.tasks)
    out = Path(out)
    refs = prepare_bigbench(resolve_bigbench_dir(bigbench_dir), names, out / "bigbench", eval_n=eval_n)
    return run_heldout(recipe, out, held_out=[str(p) for p in refs], oracle=oracle, oracle_per_task=oracle_per_task,
                       oracle_train=oracle_train, oracle_tasks=[str(p) for p in refs], limit=eval_n,
                       console=console, command=command, **report_kw)
