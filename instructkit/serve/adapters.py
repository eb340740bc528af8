"""What a server serves: one base model, its LoRA adapters (vLLM-style multi-LoRA via peft), one engine.

Each adapter is loaded into the same ``PeftModel`` under its own name and never merged, so requests for
different adapters (and the base) share one batched forward (peft ``adapter_names=``); the test checks
each adapter's log-probs against the peft-merged model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.errors import InstructkitError


def parse_adapter_specs(specs: list[str]) -> dict[str, str]:
    """``["name=path", ...]`` (or a bare path: its folder name) -> {name: path}; clear errors."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name, spec
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise InstructkitError(f"--adapter {spec!r}: expected NAME=PATH")
        if name in out:
            raise InstructkitError(f"--adapter {spec!r}: the name {name!r} is used twice")
        if not (Path(path) / "adapter_config.json").is_file():
            raise InstructkitError(f"--adapter {spec!r}: {path} holds no adapter_config.json (not a peft adapter)")
        out[name] = path
    return out


def attach_adapters(model: Any, adapters: dict[str, str]) -> Any:
    """Load every adapter into one PeftModel (unmerged) over ``model``; returns the PeftModel."""
    if not adapters:
        return model
    from peft import PeftModel

    for name, path in adapters.items():
        cfg = json.loads((Path(path) / "adapter_config.json").read_text())
        if cfg.get("peft_type", "LORA") != "LORA":
            raise InstructkitError(f"adapter {name!r} ({path}): peft_type {cfg.get('peft_type')!r}; only LoRA "
                                   "adapters can share a batch")
        if isinstance(model, PeftModel):
            model.load_adapter(path, adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, path, adapter_name=name)
    return model.eval()


@dataclass
class ServedModels:
    """The names clients may put in ``model``: the base and each adapter (with the base as parent)."""

    base: str
    adapters: dict[str, str] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def resolve(self, name: str) -> str | None:
        """``None`` for the base, the adapter name for an adapter; KeyError when unknown."""
        if name == self.base:
            return None
        if name in self.adapters:
            return name
        raise KeyError(name)

    def cards(self) -> list[dict[str, Any]]:
        base = {"id": self.base, "object": "model", "created": self.created, "owned_by": "instructkit",
                "root": self.base, "parent": None}
        return [base] + [{"id": n, "object": "model", "created": self.created, "owned_by": "instructkit",
                          "root": n, "parent": self.base} for n in self.adapters]  # never the server's file paths


def load_served(model_ref: str, adapters: dict[str, str], *, dtype: str = "float32",
                chat_template: str | None = None, **engine_kw: Any) -> tuple[Any, Any, Any]:
    """Load base + adapters; returns (engine, tokenizer, renderer). Runs in the loading thread."""
    import torch

    from instructkit.chat.render import Renderer
    from instructkit.models import load_model, load_tokenizer
    from instructkit.lm.engine import Engine

    model = load_model(model_ref, dtype=dtype)
    if hasattr(model, "merge_and_unload"):  # MODEL was itself an adapter folder: serve it merged as the base
        model = model.merge_and_unload()
    if torch.cuda.is_available():
        model.to("cuda")
    tok = load_tokenizer(model_ref)
    model = attach_adapters(model, adapters)
    return Engine(model, tok, **engine_kw), tok, Renderer(tok, chat_template)
