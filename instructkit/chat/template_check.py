"""Probe a chat template for what training (and tool use) needs; ``instructkit data template-check``.

Each check renders small probe conversations through the same :class:`Renderer` training uses, so a
pass here means the loss mask will be what it claims. The checks, and why each matters:

* ``tools_rendered``: ``tools=`` changes the text (SmolLM2's own template ignores it: the model would
  be trained to call tools it was never shown);
* ``tool_calls_without_content``: an assistant turn with ``tool_calls`` and no text renders, and the
  call is in the text (SmolLM2's template raises a Jinja error on ``content: null`` and silently drops
  the call on ``content: ""``);
* ``assistant_mask``: an assistant turn has trained tokens;
* ``eot_in_mask``: the end-of-turn/EOS token after an answer is trained (else generation never stops);
* ``prefix_stable``: appending a message leaves the earlier text unchanged (the mask locates turns by
  rendering prefixes);
* ``pad_eq_eos_safe``: with pad == eos, the EOS is still trained (labels never look at the pad id);
* ``tool_masks``: tool-call tokens are trained, tool results never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from instructkit.chat.conversation import Conversation, Message, ToolCall
from instructkit.chat.tool_support import PROBE_TOOL, _calls_problem, _tools_problem

TOOLS_TEMPLATE = "chatml_tools"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _probe_conversation(tools: bool) -> Conversation:
    msgs = [Message("system", "You are helpful."), Message("user", "What is a zebu?"),
            Message("assistant", "", tool_calls=[ToolCall("probe_lookup_fn", {"word": "zebu"}, "call_1"),
                                                 ToolCall("probe_lookup_fn", {"word": "ox"}, "call_2")]),
            Message("tool", "RESULT_ONE_zebu", name="probe_lookup_fn", tool_call_id="call_1"),
            Message("tool", "RESULT_TWO_ox", name="probe_lookup_fn", tool_call_id="call_2"),
            Message("assistant", "A humped ox."), Message("user", "Thanks!"), Message("assistant", "You are welcome.")]
    if not tools:
        msgs = [m for m in msgs if not (m.tool_calls or m.role == "tool")][:3] + msgs[6:]
        msgs[2] = Message("assistant", "A humped ox.")
    return Conversation(msgs, tools=[PROBE_TOOL] if tools else None)


def _trained_text(renderer: Any, conv: Conversation) -> tuple[str, list[str], Any]:
    r = renderer(conv)
    tok = renderer.tokenizer
    pieces, cur = [], []
    for i, l in zip(r.input_ids, r.labels):
        if l != -100:
            cur.append(i)
        elif cur:
            pieces.append(tok.decode(cur))
            cur = []
    if cur:
        pieces.append(tok.decode(cur))
    return "".join(pieces), pieces, r


def check_template(tokenizer: Any, template: str | None = None) -> list[Check]:
    from instructkit.chat.render import Renderer

    rd = Renderer(tokenizer, template)
    eos = str(getattr(tokenizer, "eos_token", "") or "")
    checks: list[Check] = []
    tp, cp = _tools_problem(rd), _calls_problem(rd)
    checks.append(Check("tools_rendered", tp is None, tp or "the tool schemas appear in the text"))
    checks.append(Check("tool_calls_without_content", cp is None, cp or "renders, and the call is in the text"))
    problem = tp or cp
    plain = _probe_conversation(tools=False)
    try:
        trained, pieces, r = _trained_text(rd, plain)
        checks.append(Check("assistant_mask", r.n_trained > 0 and "humped ox" in trained,
                            f"{r.n_trained} of {len(r)} tokens trained, {len(pieces)} spans"))
        eot = bool(eos) and all(p.rstrip().endswith(eos) for p in pieces)
        checks.append(Check("eot_in_mask", eot, f"every trained span ends with {eos!r}" if eot
                            else f"a trained span does not end with the EOS {eos!r}: {pieces[-1][-40:]!r}"))
        same = tokenizer.pad_token_id == tokenizer.eos_token_id
        checks.append(Check("pad_eq_eos_safe", eot, ("pad == eos, " if same else "pad != eos, ")
                            + ("EOS still trained" if eot else "EOS not trained")))
    except Exception as e:
        checks.append(Check("assistant_mask", False, f"{type(e).__name__}: {e}"))
    stable = _prefix_stable(rd, _probe_conversation(tools=problem is None))
    checks.append(Check("prefix_stable", stable is None, stable or "each prefix renders as a prefix of the whole"))
    if problem is None:
        try:
            trained, _, _ = _trained_text(rd, _probe_conversation(tools=True))
            ok = "zebu" in trained and '"ox"' in trained and "RESULT_" not in trained
            checks.append(Check("tool_masks", ok, "tool-call tokens trained, tool results not" if ok
                                else f"trained text: {trained[:200]!r}"))
        except Exception as e:
            checks.append(Check("tool_masks", False, f"{type(e).__name__}: {e}"))
    return checks


def _prefix_stable(rd: Any, conv: Conversation) -> str | None:
    msgs = conv.to_messages()
    try:
        whole = rd.apply(msgs, tools=conv.tools)
        for k in range(1, len(msgs)):
            if not whole.startswith(rd.apply(msgs[:k], tools=conv.tools).rstrip()):
                return f"rendering the first {k} messages is not a prefix of the whole"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def recommendation(checks: list[Check]) -> str | None:
    bad = {c.name for c in checks if not c.ok}
    if not bad:
        return None
    if bad & {"tools_rendered", "tool_calls_without_content", "tool_masks"} and not bad - {
            "tools_rendered", "tool_calls_without_content", "tool_masks"}:
        return (f"fine for plain chat; for tool use train and serve with the shipped template "
                f"'{TOOLS_TEMPLATE}' (--template {TOOLS_TEMPLATE})")
    return f"use a shipped template instead: '{TOOLS_TEMPLATE}' (ChatML, tools) or 'chatml'/'llama3'"


#: checks whose failure means the template cannot render chat data for training at all (the rest are
#: advice: tool use, end-of-turn learning)
FATAL = ("assistant_mask", "prefix_stable")


def unusable(checks: list[Check]) -> bool:
    """True when plain chat data cannot be rendered / masked with this template (``template-check`` exit 1)."""
    return any(not c.ok for c in checks if c.name in FATAL)
