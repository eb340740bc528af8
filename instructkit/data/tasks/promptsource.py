"""promptsource ``templates.yaml`` files (the T0 templates) as :class:`Template` objects.

The files use custom YAML tags (``!Template``, ``!TemplateMetadata``); we read them with a safe
loader that turns the tags into plain mappings, so promptsource itself is not needed.
``jinja: "input ||| target"`` is split after rendering (as promptsource does).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from instructkit.data.tasks.template import SEP, Template
from instructkit.errors import ConfigError


# libyaml's C loader is ~10x faster on the 2,085 templates; fall back to the pure-Python one
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("!Template", _mapping)
_Loader.add_constructor("!TemplateMetadata", _mapping)


class PSTemplate(Template):
    """A promptsource template: ``input`` holds the whole ``jinja`` (input ||| target)."""

    def render(self, row: dict[str, Any]) -> tuple[str, str, list[str] | None]:
        choices = self.choices(row)
        ctx = dict(row, answer_choices=choices or [])
        parts = self._compile(self.input).render(**ctx).split(SEP)
        prompt = parts[0].strip()
        target = parts[1].strip() if len(parts) > 1 else ""
        return prompt, target, choices


def load_promptsource(path: str | Path) -> tuple[str, list[PSTemplate]]:
    """``(dataset[/subset], templates)`` from one promptsource ``templates.yaml``."""
    p = Path(path)
    try:
        d = yaml.load(p.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("templates"), dict):
        raise ConfigError(f"{p}: key 'templates': missing (not a promptsource file)")
    name = d.get("dataset", p.parent.name) + (f"/{d['subset']}" if d.get("subset") else "")
    out = []
    for uid, t in d["templates"].items():
        if not isinstance(t, dict) or "jinja" not in t:
            raise ConfigError(f"{p}: key 'templates.{uid}.jinja': missing")
        md = t.get("metadata") or {}
        tpl = PSTemplate(id=f"{name}/{t.get('name', uid)}", input=t["jinja"], target="",
                         answer_choices=t.get("answer_choices"), choices_in_prompt=bool(md.get("choices_in_prompt")),
                         metrics=list(md.get("metrics") or []), original_task=md.get("original_task"),
                         name=t.get("name", uid), strict=False)
        try:
            tpl._compile(tpl.input)
            if isinstance(tpl.answer_choices, str):
                tpl._compile(tpl.answer_choices)
        except Exception as e:  # jinja syntax errors name the template
            raise ConfigError(f"{p}: key 'templates.{uid}.jinja': {e}") from None
        out.append(tpl)
    return name, out


class _Anything(str):
    """A plausible value for a field whose shape is unknown (``answers.text[0]``, ``d["x"]``, loops):
    a string that also answers attribute access, indexing and iteration with more such values."""

    def __getattr__(self, name: str) -> "_Anything":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self} {name}")

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, slice):
            return str.__getitem__(self, key)
        return _Anything(f"{self} {key}")

    def __iter__(self):  # type: ignore[override]
        return iter([_Anything(f"{self} {i}") for i in range(3)])

    def __len__(self) -> int:
        return 3


def synthetic_value(name: str, rng: random.Random) -> Any:
    n = name.lower()
    if n in ("label", "answer", "idx", "gold", "correct_answer_idx") or n.endswith(("label", "_id", "idx")):
        return rng.randint(0, 1)
    if n.endswith("s") and n not in ("class", "news", "dialogues"):
        return [f"{name} {i}" for i in range(3)]
    return _Anything(f"the {name}")


def synthetic_row(tpl: Template, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    return {v: synthetic_value(v, rng) for v in sorted(tpl.variables())}


@dataclass
class CheckReport:
    files: int = 0
    templates: int = 0
    rendered: int = 0
    nonempty_target: int = 0
    failures: dict[str, int] = None  # type: ignore[assignment]

    def __str__(self) -> str:
        top = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items(), key=lambda x: -x[1])[:6])
        return (f"{self.files} files, {self.templates} templates parsed; {self.rendered} render on a synthetic row "
                f"({self.rendered / max(self.templates, 1):.1%}), {self.nonempty_target} with a non-empty target; "
                f"render failures by error: {top or 'none'}")


def check_tree(root: str | Path) -> CheckReport:
    rep = CheckReport(failures={})
    for f in sorted(Path(root).rglob("templates.yaml")):
        _, tpls = load_promptsource(f)  # raises on a file that does not parse
        rep.files += 1
        for t in tpls:
            rep.templates += 1
            try:
                prompt, target, _ = t.render(synthetic_row(t))
            except Exception as e:
                key = type(e).__name__
                rep.failures[key] = rep.failures.get(key, 0) + 1
                continue
            rep.rendered += 1
            rep.nonempty_target += bool(target)
    return rep
