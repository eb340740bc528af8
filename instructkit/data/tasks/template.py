"""A prompt template: Jinja for input and target, optional answer choices (promptsource style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
_LOOSE = jinja2.Environment(undefined=jinja2.Undefined)  # promptsource templates rely on lenient undefineds
SEP = "|||"


def _most_frequent(items: list) -> Any:
    return max(set(items), key=list(items).count) if items else ""


# promptsource registers these on its environment; its templates use them
_LOOSE.filters.update(choice=lambda xs: sorted(xs, key=str)[0] if xs else "",  # deterministic stand-in for random.choice
                      most_frequent=_most_frequent, highlight=lambda x: x)
_LOOSE.globals.update(zip=zip, enumerate=enumerate, range=range, len=len)


@dataclass
class Template:
    id: str
    input: str
    target: str
    answer_choices: str | list[str] | None = None
    inverted: bool = False
    choices_in_prompt: bool = False
    cot: bool = False
    name: str = ""
    metrics: list[str] = field(default_factory=list)
    original_task: bool | None = None
    strict: bool = True
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _compile(self, src: str) -> jinja2.Template:
        t = self._cache.get(src)
        if t is None:
            t = self._cache[src] = (_ENV if self.strict else _LOOSE).from_string(src)
        return t

    def choices(self, row: dict[str, Any]) -> list[str] | None:
        if self.answer_choices is None:
            return None
        if isinstance(self.answer_choices, list):
            return [str(c) for c in self.answer_choices]
        text = self._compile(self.answer_choices).render(**row)
        return [c.strip() for c in text.split(SEP)]

    def render(self, row: dict[str, Any]) -> tuple[str, str, list[str] | None]:
        """``(prompt, target, choices or None)``; inverted templates never carry choices."""
        choices = self.choices(row)
        ctx = dict(row, answer_choices=choices or [])
        prompt = self._compile(self.input).render(**ctx).strip()
        target = self._compile(self.target).render(**ctx).strip()
        return prompt, target, (None if self.inverted else choices)

    def variables(self) -> set[str]:
        """Names the Jinja reads from the row (for synthetic rows and validation)."""
        from jinja2 import meta
        env = _ENV if self.strict else _LOOSE
        names: set[str] = set()
        for src in (self.input, self.target, self.answer_choices if isinstance(self.answer_choices, str) else ""):
            names |= meta.find_undeclared_variables(env.parse(src or ""))
        return names - {"answer_choices"}
