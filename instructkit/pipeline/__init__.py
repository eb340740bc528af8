"""Recipes as pipelines: ``instructkit run RECIPE.yaml`` runs a method's stages with cached, fingerprinted
outputs. The contract for stage authors is in ``docs/recipes.md`` (section "Writing a stage").

* :mod:`.registry`: ``STAGES`` — stage kind -> :class:`Stage` (an import path of a plain function).
* :mod:`.runner`: plan (references, cycles, fingerprints, what is cached) and run.
* :mod:`.builtin`: the stage functions over the existing stage packages (mix, train, eval, report).
"""
