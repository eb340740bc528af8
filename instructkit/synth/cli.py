"""``instructkit synth``: self-instruct, evol, magpie, multiturn, clean-sharegpt.

Each command takes ``--config FILE`` (a YAML mapping of that method's config: see ``docs/synth.md``),
a few common flags, and trailing ``key=value`` overrides (``teacher.temperature=0.9 rounds=2``).
Rerunning a command on the same ``--out`` resumes from the teacher cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})

_TEACHER = typer.Option(None, "--teacher", help="Teacher: model alias/folder, http(s) URL of an OpenAI-compatible "
                        "server, or py:module:factory. Default: smollm2-135m-instruct.")
_OUT = typer.Option(..., "--out", help="Output folder (rerun the same command to resume).")
_CONFIG = typer.Option(None, "--config", help="YAML file with this method's settings.")
_OVR = typer.Argument(None, help="key=value overrides, e.g. teacher.max_new_tokens=256 num_instructions=50.")


def _cfg(model: Any, config: Optional[Path], overrides: Optional[list[str]], **flags: Any) -> Any:
    from instructkit.config.base import load_config

    ovr = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(overrides or [])
    return load_config(model, config, ovr)


def _done(res: dict[str, Any]) -> None:
    from rich.console import Console
    c = Console()
    c.print(f"kept {res['kept']} -> {res['data']}", highlight=False)
    c.print(f"report: {Path(res['report']).with_suffix('.md')}", highlight=False)


@app.command("self-instruct")
def self_instruct_cmd(out: Path = _OUT, seeds: Optional[str] = typer.Option(None, help="Seed tasks (self-instruct JSONL or Alpaca JSON)."),
                      n: Optional[int] = typer.Option(None, "-n", help="Instructions to keep."),
                      style: Optional[str] = typer.Option(None, help="alpaca | paper."),
                      teacher: Optional[str] = _TEACHER, config: Optional[Path] = _CONFIG,
                      overrides: Optional[list[str]] = _OVR) -> None:
    """Self-instruct (Alpaca or paper style) with ROUGE-L and rule filters, every drop counted."""
    from instructkit.config.synth import SelfInstructConfig
    from instructkit.synth.stage import run_self_instruct
    cfg = _cfg(SelfInstructConfig, config, overrides, seeds=seeds, num_instructions=n, style=style,
               **{"teacher.model": teacher})
    _done(run_self_instruct(cfg, out))


@app.command("evol")
def evol_cmd(out: Path = _OUT, instructions: Optional[str] = typer.Option(None, help="Instructions to evolve."),
             rounds: Optional[int] = typer.Option(None, help="Evolution rounds M."),
             limit: Optional[int] = typer.Option(None, help="First N instructions only."),
             teacher: Optional[str] = _TEACHER, config: Optional[Path] = _CONFIG,
             overrides: Optional[list[str]] = _OVR) -> None:
    """Evol-instruct: in-depth + in-breadth evolution, M rounds, all four elimination rules, lineage."""
    from instructkit.config.synth import EvolConfig
    from instructkit.synth.stage import run_evol
    cfg = _cfg(EvolConfig, config, overrides, instructions=instructions, rounds=rounds, limit=limit,
               **{"teacher.model": teacher})
    _done(run_evol(cfg, out))


@app.command("magpie")
def magpie_cmd(out: Path = _OUT, n: Optional[int] = typer.Option(None, "-n", help="Instructions to sample."),
               teacher: Optional[str] = _TEACHER, config: Optional[Path] = _CONFIG,
               overrides: Optional[list[str]] = _OVR) -> None:
    """Magpie: sample instructions after the chat template's own pre-query, then responses."""
    from instructkit.config.synth import MagpieConfig
    from instructkit.synth.stage import run_magpie
    _done(run_magpie(_cfg(MagpieConfig, config, overrides, n=n, **{"teacher.model": teacher}), out))


@app.command("multiturn")
def multiturn_cmd(out: Path = _OUT, instructions: Optional[str] = typer.Option(None, help="Single-turn data to expand."),
                  turns: Optional[int] = typer.Option(None, help="Turns per conversation."),
                  limit: Optional[int] = typer.Option(None, help="First N instructions only."),
                  teacher: Optional[str] = _TEACHER, config: Optional[Path] = _CONFIG,
                  overrides: Optional[list[str]] = _OVR) -> None:
    """WizardVicuna-style expansion: the teacher plays user (follow-ups) and assistant for k turns."""
    from instructkit.config.synth import MultiTurnConfig
    from instructkit.synth.stage import run_multiturn
    cfg = _cfg(MultiTurnConfig, config, overrides, instructions=instructions, turns=turns, limit=limit,
               **{"teacher.model": teacher})
    _done(run_multiturn(cfg, out))


# preference pairs (RLAIF) live with the preference-tuning work (issue #14): instructkit/synth/preferences.py
from instructkit.synth.preferences import preferences_cmd  # noqa: E402

app.command("preferences")(preferences_cmd)


@app.command("clean-sharegpt")
def clean_cmd(out: Path = _OUT, input: Optional[str] = typer.Option(None, "--input", help="ShareGPT JSON/JSONL."),
              max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Split longer conversations."),
              languages: Optional[str] = typer.Option(None, help="Comma-separated language codes to keep (e.g. en)."),
              limit: Optional[int] = typer.Option(None, help="First N conversations only."),
              config: Optional[Path] = _CONFIG, overrides: Optional[list[str]] = _OVR) -> None:
    """Vicuna/FastChat ShareGPT cleaning: HTML->markdown, roles, language, dedup, token-exact splitting."""
    from instructkit.config.synth import CleanConfig
    from instructkit.synth.stage import run_clean
    langs = f"[{languages}]" if languages else None
    _done(run_clean(_cfg(CleanConfig, config, overrides, input=input, max_tokens=max_tokens, languages=langs,
                         limit=limit), out))
