"""Walk every shipped recipe: it validates, its data files exist, its tasks load."""

from pathlib import Path

import pytest

from instructkit.config import load_config
from instructkit.config.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_is_valid(path):
    r = load_config(Recipe, path)
    assert r.description.strip(), f"{path.name}: say what the recipe reproduces"
    for p in r.data.paths:
        assert (REPO / p).exists() or "shared" in p, f"{path.name}: data path {p} missing"
    if r.mix is not None and r.mix.tasks:
        from instructkit.data.tasks import load_task
        for t in r.mix.tasks:
            if "shared" in t and not (REPO / t).exists():
                continue
            load_task(t)
