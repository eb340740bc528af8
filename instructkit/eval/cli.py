"""``instructkit eval``. (Owned by the evaluation stage.)"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def _register_judge() -> None:
    # the LLM judge and ratings (eval/judge*.py, eval/ratings.py) own their sub-commands
    from instructkit.eval.judge_cli import register
    register(app)


_register_judge()
