"""``instructkit data template-check``: what a chat template does for training and tool use."""

from __future__ import annotations

from typing import Optional

import typer


def template_check(
    model: str = typer.Argument("smollm2-135m-instruct", help="Model whose tokenizer (and own template) is probed."),
    template: Optional[str] = typer.Option(None, help="Template to probe instead of the tokenizer's (shipped name, .jinja file)."),
) -> None:
    """Probe a chat template: tools rendered, tool_calls without content, assistant mask, end-of-turn in the
    mask, prefix stability, pad == eos; says which shipped template to use instead. Exit code 0 with the verdict
    (advice on tool use or end-of-turn learning included); 1 only when the template cannot render and mask
    plain chat data at all (assistant mask or prefix stability fails)."""
    from rich.console import Console
    from rich.table import Table

    from instructkit.chat.template_check import check_template, recommendation, unusable
    from instructkit.models import load_tokenizer

    tok = load_tokenizer(model)
    checks = check_template(tok, template)
    which = template or "the tokenizer's own"
    t = Table(title=f"chat template: {which} ({model})")
    t.add_column("check")
    t.add_column("ok")
    t.add_column("detail", overflow="fold")
    for c in checks:
        t.add_row(c.name, "[green]yes[/green]" if c.ok else "[red]no[/red]", c.detail)
    con = Console()
    con.print(t)
    rec = recommendation(checks)
    con.print(f"verdict: {rec}" if rec else "verdict: fit for training, tool calls included", highlight=False)
    if unusable(checks):
        con.print("this template cannot render chat data for training", highlight=False)
        raise typer.Exit(1)
