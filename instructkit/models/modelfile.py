"""An Ollama ``Modelfile`` whose TEMPLATE renders a conversation exactly like our renderer.

Ollama templates are Go ``text/template`` programs, not Jinja, so the Jinja chat template cannot be
copied over. Instead it is *measured*: rendered with marker contents to read off, per role, the text
before and after a message's content, the text before the first message (a BOS), the generation prompt,
and the system prompt the template inserts when a conversation has none (that one becomes the
Modelfile's ``SYSTEM``, which Ollama inserts the same way). The measured pieces are then checked by
re-rendering several multi-turn conversations both ways; a template whose output is not "a wrapper per
message" (one that reorders, merges or numbers turns) is reported as not translatable, and the Modelfile
goes out without TEMPLATE (Ollama then falls back to the GGUF's ``tokenizer.chat_template``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from instructkit.errors import InstructkitError

MARK = "\x02XQZ\x03"
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class TemplateShape:
    head: str
    wrappers: dict[str, tuple[str, str]]
    generation_prompt: str
    default_system: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def end_of_turn(self) -> str | None:
        """The text closing an assistant turn (``<|im_end|>``), stripped of whitespace: the stop string."""
        return self.wrappers["assistant"][1].strip() or None

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        """What the Ollama template produces (with the Modelfile SYSTEM inserted as Ollama does)."""
        msgs = list(messages)
        if self.default_system is not None and not any(m["role"] == "system" for m in msgs):
            msgs = [{"role": "system", "content": self.default_system}] + msgs
        body = "".join(self.wrappers[m["role"]][0] + m["content"] + self.wrappers[m["role"]][1]
                       for m in msgs if m["role"] in self.wrappers)
        return self.head + body + self.generation_prompt


class NotTranslatable(InstructkitError):
    pass


def _split_once(text: str, what: str) -> tuple[str, str]:
    if text.count(MARK) != 1:
        raise NotTranslatable(f"{what}: the message content does not appear exactly once in the rendered text")
    a, b = text.split(MARK)
    return a, b


def _strip_prefix(text: str, prefix: str, what: str) -> str:
    if not text.startswith(prefix):
        raise NotTranslatable(f"{what}: adding a message rewrote the text before it")
    return text[len(prefix):]


def measure(render: Callable[[list[dict[str, Any]], bool], str]) -> TemplateShape:
    """Read a template's shape off ``render(messages, add_generation_prompt)``; raise NotTranslatable."""
    base = [{"role": "system", "content": "S1"}, {"role": "user", "content": "U1"}]
    base_text = render(base, False)
    wrappers: dict[str, tuple[str, str]] = {}
    for role in ("user", "assistant", "tool"):
        try:
            text = render(base + [{"role": role, "content": MARK}], False)
        except Exception as e:  # a template may reject a role (tool) outright
            if role == "tool":
                continue
            raise NotTranslatable(f"rendering a {role} turn fails: {e}") from None
        if MARK not in text and role == "tool":
            continue
        wrappers[role] = _split_once(_strip_prefix(text, base_text, role), role)
    user = wrappers["user"][0] + "U1" + wrappers["user"][1]
    first_sys = render([{"role": "system", "content": MARK}, {"role": "user", "content": "U1"}], False)
    if not first_sys.endswith(user):
        raise NotTranslatable("the user turn after a system message renders differently from a later one")
    head_and_pre, sys_suf = _split_once(first_sys[: len(first_sys) - len(user)], "system")
    no_sys = render([{"role": "user", "content": "U1"}], False)
    if not no_sys.endswith(user):
        raise NotTranslatable("the first user turn renders differently from a later one")
    lead = no_sys[: len(no_sys) - len(user)]
    default = None
    if lead.startswith(head_and_pre) and lead.endswith(sys_suf) and len(lead) >= len(head_and_pre) + len(sys_suf):
        default, head, sys_pre = lead[len(head_and_pre): len(lead) - len(sys_suf)], "", head_and_pre
    elif head_and_pre.startswith(lead):
        head, sys_pre = lead, head_and_pre[len(lead):]
    else:
        raise NotTranslatable("the text before the first message depends on whether there is a system message")
    wrappers["system"] = (sys_pre, sys_suf)
    gen = _strip_prefix(render(base, True), base_text, "generation prompt")
    shape = TemplateShape(head=head, wrappers=wrappers, generation_prompt=gen, default_system=default)
    _verify(shape, render)
    return shape


def _probe_conversations(roles: Sequence[str]) -> list[list[dict[str, Any]]]:
    turns = [("user", "What is 2+2?"), ("assistant", "It is 4."), ("user", "Und auf Deutsch? 日本語 ok"),
             ("assistant", "Vier.\nDone"), ("user", "Thanks")]
    if "tool" in roles:
        turns[3:3] = [("assistant", "calc(2+2)"), ("tool", "4")]
    conv = [{"role": r, "content": c} for r, c in turns]
    return [conv, [{"role": "system", "content": "Be brief."}] + conv, conv[:1],
            [{"role": "system", "content": "You answer in lists."}] + conv[:2]]


def _verify(shape: TemplateShape, render: Callable[[list[dict[str, Any]], bool], str]) -> None:
    for conv in _probe_conversations(list(shape.wrappers)):
        want, got = render(conv, True), shape.render(conv)
        if want != got:
            i = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            raise NotTranslatable(f"a {len(conv)}-message conversation renders differently at character {i}: "
                                  f"{want[max(0, i - 20): i + 20]!r} vs {got[max(0, i - 20): i + 20]!r}")
    ws = [{"role": "user", "content": "  padded  "}]
    if render(ws, True) != shape.render(ws):
        shape.notes.append("the chat template trims message contents; the Ollama template does not")


def _go_text(s: str) -> str:
    # literal text is copied verbatim by text/template except the action delimiters
    return s.replace("{{", '{{ "{{" }}')


def go_template(shape: TemplateShape) -> str:
    """The Ollama (Go text/template) program for ``shape``: one wrapper per message role."""
    branches = []
    for k, role in enumerate(r for r in ROLES if r in shape.wrappers):
        pre, suf = shape.wrappers[role]
        kw = "if" if k == 0 else "else if"
        branches.append(f'{{{{ {kw} eq .Role "{role}" }}}}{_go_text(pre)}{{{{ .Content }}}}{_go_text(suf)}')
    return (_go_text(shape.head) + "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}"
            + _go_text(shape.generation_prompt))


def _quoted(s: str) -> str:
    if '"""' in s:
        raise NotTranslatable('the text contains """, which a Modelfile cannot quote')
    return '"""' + s + '"""'


def modelfile_text(gguf_name: str, shape: TemplateShape | None, stops: Sequence[str], why: str = "") -> str:
    lines = ["# Ollama: ollama create NAME -f Modelfile && ollama run NAME", f"FROM ./{gguf_name}"]
    if shape is not None:
        lines.append(f"TEMPLATE {_quoted(go_template(shape))}")
        if shape.default_system is not None:
            lines.append(f"SYSTEM {_quoted(shape.default_system)}")
        lines += [f"# note: {n}" for n in shape.notes]
    else:
        lines.append(f"# no TEMPLATE: {why}; Ollama uses the chat template stored in the GGUF")
    for s in dict.fromkeys(s for s in stops if s):
        lines.append("PARAMETER stop " + (_quoted(s) if '"' in s or "\n" in s else f'"{s}"'))
    return "\n".join(lines) + "\n"
