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
    from instructkit.data.tasks import load_tasks
    mixes = [r.mix] + [(e.config.get("mix") or {}) for e in r.stages.values()]
    for m in mixes:
        tasks = (m.tasks if hasattr(m, "tasks") else m.get("tasks")) if m else None
        if tasks:
            load_tasks([t if t == "builtin" or not (REPO / t).exists() else str(REPO / t) for t in tasks
                        if not ("shared" in t and not (REPO / t).exists())])


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_dry_runs(path, monkeypatch, tmp_path):
    """`instructkit run RECIPE --dry-run`: kinds registered, stage configs valid, references resolve, no cycle."""
    from instructkit.pipeline import runner

    monkeypatch.chdir(REPO)  # recipes name repo-relative paths (recipes/tasks/..., examples/...)
    r = load_config(Recipe, path, [f"output_dir={tmp_path / 'run'}"])
    planned = runner.run(r, path, dry_run=True)
    assert planned and all(v["status"] == "run" for v in planned.values())
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def _strings(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shared_data_paths_point_beside_the_checkout(path):
    """``../`` paths are relative to the recipe file (config/base.py): shared data is ../../shared from
    recipes/, never ../shared (that is inside the repo, where nothing is; instructgpt_ppo's PPO stages
    failed on it)."""
    import os

    import yaml
    for s in _strings(yaml.safe_load(path.read_text())):
        if s.startswith(("./", "../")) and "shared/" in s:
            resolved = Path(os.path.normpath(path.parent / s))
            assert resolved.is_relative_to(REPO.parent / "shared"), f"{path.name}: {s} -> {resolved}"
