"""``instructkit data inspect``: what the model will actually be trained on.

Per-example token views (trained tokens highlighted, token boundaries visible) in the terminal (rich)
and as an HTML page, plus stats over the whole file (examples, tokens, trained share, truncated,
dropped, skipped by reason) and a token-length histogram PNG.
"""

from __future__ import annotations

import html
import statistics
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.data.prepare import PrepareReport

#: (token text, trained?) pairs
TokenView = list[tuple[str, bool]]


@dataclass
class ExampleView:
    source: str
    line: int
    tokens: TokenView  # one piece per whole character run (a character split over tokens is one piece)
    truncated: bool = False
    n_tokens: int | None = None  # tokens shown (pieces can hold several tokens of one character)
    n_trained_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.n_tokens is None:
            self.n_tokens = len(self.tokens)
        if self.n_trained_tokens is None:
            self.n_trained_tokens = sum(t for _, t in self.tokens)

    @property
    def n_trained(self) -> int:
        return self.n_trained_tokens


@dataclass
class InspectResult:
    report: PrepareReport
    lengths: list[int]
    max_length: int | None
    examples: list[ExampleView] = field(default_factory=list)

    def summary(self) -> str:
        r, ls = self.report, sorted(self.lengths)
        lines = [f"examples: {r.examples} kept of {r.read} read; skipped {r.skipped.total} (bad records), "
                 f"dropped {r.dropped_total} ({r.dropped_no_trained} no trained token, {r.dropped_too_long} too "
                 f"long), truncated {r.truncated} (max_length={self.max_length}, truncate: {r.truncate})",
                 f"tokens: {r.tokens} total, {r.trained_tokens} trained ({r.trained_share:.1%})"]
        for reason, n in r.dropped.counts.most_common():  # located drops: where to look
            lines.append(f"dropped ({reason}): {n}, e.g. " + "; ".join(r.dropped.examples.get(reason, [])[:3]))
        if r.drops_path:
            lines.append(f"every drop, located: {r.drops_path}")
        if ls:
            p95 = ls[min(len(ls) - 1, int(0.95 * len(ls)))]
            lines.append(f"length: min {ls[0]}, median {statistics.median(ls):.0f}, mean {statistics.fmean(ls):.1f}, "
                         f"p95 {p95}, max {ls[-1]}")
        return "\n".join(lines)


#: characters a terminal or browser would act on instead of showing: C0/C1 controls, bidi overrides and
#: isolates (U+202E turns the rest of the line around), zero-width and other format characters
_HIDDEN = ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")


def visible(piece: str) -> str:
    """``piece`` with every control / bidi / format character written as an escape (``\u202e``); newlines
    and tabs are kept (the views mark newlines themselves)."""
    if piece.isprintable():
        return piece
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in _HIDDEN else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in piece)


def token_view(renderer: Renderer, conv: Conversation) -> tuple[TokenView, bool]:
    """The exact text of ``conv``'s tokens (sliced from the rendered text by offsets, control and bidi
    characters escaped) and whether each is trained. A character a byte-level tokenizer splits over
    several tokens (``こ`` = 3 bytes) is one piece holding those tokens, never shown as ``\ufffd`` halves.
    Returns ``(pieces, truncated)``; :func:`example_view` adds the token counts."""
    pieces, truncated, _, _ = _pieces(renderer, conv)
    return pieces, truncated


def _pieces(renderer: Renderer, conv: Conversation) -> tuple[TokenView, bool, int, int]:
    from instructkit.data.render_rows import char_budget, max_token_chars

    text, spans = renderer.text_and_spans(conv)
    budget = char_budget(renderer.max_length, max_token_chars(renderer.tokenizer))
    window = budget is not None and len(text) > budget
    if window:  # a huge record: tokenize only the head the view shows (render_rows.py says why)
        text, spans = text[:budget], [(a, min(b, budget)) for a, b in spans if a < budget]
    enc = renderer.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    labels = Renderer.labels_from_offsets(ids, offsets, spans)
    n = min(renderer.max_length if renderer.max_length is not None else len(ids), len(ids))
    pieces: TokenView = []
    group_start, group_trained = None, False
    for k in range(n):
        s = offsets[k][0] if group_start is None else group_start
        group_start, group_trained = s, group_trained or labels[k] != IGNORE_INDEX
        # offsets may be trimmed (no leading space): a token's text runs to the next token's start; a token
        # ending inside a character shares its start with the next one: it joins the next piece
        e = offsets[k + 1][0] if k + 1 < len(ids) else len(text)
        if e <= s and k + 1 < n:
            continue
        piece = text[s:e] if e > s else text[s:max(offsets[k][1], s)] or renderer.tokenizer.decode(ids[k:k + 1])
        pieces.append((visible(piece), group_trained))
        group_start, group_trained = None, False
    trained = sum(lab != IGNORE_INDEX for lab in labels[:n])
    return pieces, window or len(ids) > n, n, trained


def inspect_conversations(convs: list[Conversation], tokenizer: Any, *, template: str | None, max_length: int | None,
                          report: PrepareReport, lengths: list[int], n: int) -> InspectResult:
    renderer = Renderer(tokenizer, template, max_length)
    views = []
    for c in convs[:n]:
        toks, trunc, n_tok, n_tr = _pieces(renderer, c)
        views.append(ExampleView(str(c.meta.get("source", "")), int(c.meta.get("line", -1)), toks, trunc, n_tok,
                                 n_tr))
    return InspectResult(report, lengths, max_length, views)


# -- terminal ---------------------------------------------------------------------------------------------
# alternating shades make token boundaries visible; green = trained, grey = context
_STYLES = {(True, 0): "black on green3", (True, 1): "black on dark_sea_green2",
           (False, 0): "grey70 on grey19", (False, 1): "grey85 on grey27"}


def rich_view(view: ExampleView) -> Any:
    from rich.text import Text

    t = Text()
    for k, (piece, trained) in enumerate(view.tokens):
        t.append(piece.replace("\n", "\u21b5\n"), style=_STYLES[(trained, k % 2)])
    return t


# -- HTML -------------------------------------------------------------------------------------------------
_CSS = """body{font-family:sans-serif;margin:2em;max-width:70em}
.ex{font-family:monospace;white-space:pre-wrap;border:1px solid #ccc;padding:.6em;margin:.4em 0 1.4em}
.t{border-right:1px solid #999}.p{background:#eee;color:#555}.p.o{background:#ddd}
.y{background:#9be39b;color:#000}.y.o{background:#c8f0c8}.nl{color:#aaa}
h2{font-size:1em;margin-bottom:0}pre{background:#f6f6f6;padding:.6em}"""


def html_page(result: InspectResult, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<pre>{html.escape(result.summary())}</pre>",
             "<p>Green: trained tokens (loss on). Grey: context (masked, label -100). "
             "Each box is one token; &#8629; marks a newline.</p>"]
    for v in result.examples:
        head = f"{v.source}:{v.line} - {v.n_tokens} tokens, {v.n_trained} trained" + (
            " (truncated)" if v.truncated else "")
        parts.append(f"<h2>{html.escape(head)}</h2><div class='ex'>")
        for k, (piece, trained) in enumerate(v.tokens):
            cls = ("t y" if trained else "t p") + (" o" if k % 2 else "")
            text = html.escape(piece).replace("\n", "<span class='nl'>&#8629;</span>\n")
            parts.append(f"<span class='{cls}'>{text}</span>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "".join(parts)


# -- plot -------------------------------------------------------------------------------------------------
def length_histogram(result: InspectResult, out: str | Path, title: str = "token lengths") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    r = result.report
    kept, dropped = result.lengths or [0], r.dropped_lengths
    every = kept + dropped
    bins = min(50, max(5, len(set(every))))
    edges = __import__("numpy").histogram_bin_edges(every, bins=bins)
    # dropped examples (at their full length) stacked in red on the kept ones: what max_length throws away
    ax.hist([kept, dropped] if dropped else [kept], bins=edges, stacked=True,
            color=["#4a7", "#c55"][: 2 if dropped else 1], edgecolor="#264",
            label=["kept (after truncation)", f"dropped: {r.dropped_total}"][: 2 if dropped else 1])
    if result.max_length:
        ax.axvline(result.max_length, color="#c33", linestyle="--", label=f"max_length={result.max_length}")
    ax.legend()
    ax.set_title(f"{title}\n{r.examples} kept, {r.dropped_total} dropped, {r.truncated} truncated "
                 f"(truncate: {r.truncate}); {r.tokens} tokens, {r.trained_share:.1%} trained", fontsize=9)
    ax.set_xlabel("tokens per example (kept: after truncation; dropped: full length)")
    ax.set_ylabel("examples")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
