"""Typed configuration: pydantic models are the single source for YAML files, CLI help and dotted overrides.

* Every section subclasses :class:`Section` (unknown keys are errors; every field has a description).
* ``load_config(Model, path, ["train.lr=1e-4", ...])`` reads YAML, applies dotted overrides (values are
  parsed as YAML scalars/lists) and validates; errors name the dotted key.
* ``describe(Model)`` lists every dotted key with type, default and doc (used by ``--help`` and
  ``instructkit config show``).
"""

from __future__ import annotations

from instructkit.config.base import (Section, apply_overrides, describe, dump_yaml, help_text, load_config,
                                     parse_overrides, validate)

__all__ = ["Section", "apply_overrides", "describe", "dump_yaml", "help_text", "load_config", "parse_overrides",
           "validate"]
