"""The CPU-scale recipes run end to end as shipped (slow: minutes to hours on the 2-core CPU; not in CI).

Run one: ``python -m pytest -m slow tests/integration/pipeline/test_recipes_run.py -k muppet``; the same as
``instructkit run recipes/muppet.yaml``. Results go to docs/recipes.md by hand, with the command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from instructkit.config import load_config
from instructkit.config.recipe import Recipe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared" / "data"
# recipe -> shared data it needs (skipped cleanly when ../shared is absent)
CPU_RECIPES = {"muppet": None, "flan_heldout": None, "sft_qlora": None, "t0": "t0_train",
               "flan2022_cot": "gsm8k"}


@pytest.mark.parametrize("name", sorted(CPU_RECIPES))
def test_recipe_runs_end_to_end(name, tmp_path, monkeypatch):
    from instructkit.pipeline import runner

    need = CPU_RECIPES[name]
    if need and not (SHARED / need).exists():
        pytest.skip(f"needs ../shared/data/{need}")
    monkeypatch.chdir(REPO)
    path = REPO / "recipes" / f"{name}.yaml"
    rec = load_config(Recipe, path, [f"output_dir={tmp_path / 'run'}", "train.progress=false"])
    res = runner.run(rec, path)
    assert res and all(v["status"] == "ran" for v in res.values())
    # a second run finds every stage cached
    again = runner.run(rec, path)
    assert {v["status"] for v in again.values()} == {"cached"}
