"""The configuration machinery shared by every stage (see package docstring)."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from instructkit.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class Section(BaseModel):
    """Base of every config section: unknown keys are errors; assignment is validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["train.lr=1e-4", "data.paths=[a.jsonl,b.jsonl]"]`` -> ``[("train.lr", 1e-4), ...]``."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        k, v = item.split("=", 1)
        k = k.strip().lstrip("-")
        try:
            val = yaml.safe_load(v) if v != "" else ""
        except yaml.YAMLError:
            val = v
        # YAML reads 1e-4 as a string (no dot before e); numbers written that way are meant as floats
        if isinstance(val, str):
            try:
                val = float(val) if any(c in val.lower() for c in "e.") and val.lower() not in ("inf", "nan") else val
            except ValueError:
                pass
        out.append((k, val))
    return out


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    for k, v in parse_overrides(overrides):
        _set_dotted(data, k, v)
    return data


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            lines.append(f"key '{key}': {e['msg']} (got {e.get('input')!r})")
    return f"invalid config ({source}):\n  " + "\n  ".join(lines)


def validate(model: type[T], data: dict[str, Any], source: str = "config") -> T:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{self.name}:{line}: duplicate key {key!r} (first set on line {seen[key]}); "
                                  "YAML would silently keep only the last one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(p: Path) -> Any:
    """Parse a YAML file: duplicate keys are errors, syntax errors name the file."""
    text = p.read_text(encoding="utf-8-sig")
    loader = _UniqueKeyLoader(text)
    loader.name = str(p)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def _relative_to(data: Any, base: Path) -> Any:
    """Strings written ``./x`` or ``../x`` in a recipe are paths relative to the recipe file, so a recipe
    works from any working directory (``recipes/t0.yaml`` names ``../shared/data``)."""
    if isinstance(data, dict):
        return {k: _relative_to(v, base) for k, v in data.items()}
    if isinstance(data, list):
        return [_relative_to(v, base) for v in data]
    if isinstance(data, str) and data.startswith(("./", "../")):
        return str(Path(os.path.normpath(base / data)))
    return data


def load_config(model: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Read YAML (optional), apply dotted overrides, validate into ``model``.

    In the file, duplicate keys and an empty file are errors, and ``./``/``../`` paths are relative to the
    file (see :func:`_relative_to`); overrides are taken as given (relative to the working directory)."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        data = read_yaml(p)
        if data is None:
            raise ConfigError(f"{p}: the file is empty (no sections); write at least one, e.g. 'model:' or 'data:'")
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = _relative_to(data, p.resolve().parent)
        source = str(p)
    overrides = list(overrides)
    if overrides:
        apply_overrides(data, overrides)
        source += " + overrides"
    return validate(model, data, source)


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "|".join(repr(a) if not isinstance(a, str) else a for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        name = getattr(origin, "__name__", str(origin)).replace("UnionType", "Union")
        return f"{name}[{args}]"
    return getattr(tp, "__name__", str(tp))


def describe(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Rows ``(dotted key, type, default, doc)`` for every leaf field, sections expanded."""
    rows = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = f.annotation
        # Optional[Section] is expanded like a Section
        inner = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(inner) == 1 and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            ann = inner[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(describe(ann, key + "."))
            continue
        default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
        rows.append((key, _type_name(ann), default, f.description or ""))
    return rows


def help_text(model: type[BaseModel], prefix: str = "") -> str:
    """Plain-text table of :func:`describe` (for ``--help`` epilogs)."""
    rows = describe(model, prefix)
    w = max((len(r[0]) for r in rows), default=10)
    return "\n".join(f"{k:<{w}}  {doc} [{t}; default {d}]" for k, t, d, doc in rows)
