"""Render a :class:`Conversation` into ``(input_ids, labels)``: masking lives here, nowhere else.

How the mask is found: the chat template is rendered once for the whole conversation and once per
trained turn for its prefixes, so each trained turn is a character span of the full text
``[len(prefix + generation prompt), len(text through that turn, trailing whitespace stripped))``.
The full text is tokenized once with offsets and a token is trained iff it starts inside a span.
Consequences, each covered by a test:

* the token sequence is exactly ``tokenizer.apply_chat_template(messages, chat_template=template)``;
* every assistant turn is trained, not just the last one (the Axolotl multi-turn bug);
* the end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, ``</s>``) is inside the span and trained,
  whether or not pad == eos, because labels never look at the pad id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections import Counter
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from instructkit.chat.conversation import Conversation
from instructkit.errors import DataError, InstructkitError

IGNORE_INDEX = -100
TEMPLATE_DIR = Path(__file__).parent / "templates"


def shipped_templates() -> list[str]:
    """Names of the chat templates shipped as data files (``chat/templates/*.jinja``)."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.jinja"))


def resolve_template(template: str | None, tokenizer: Any = None) -> str:
    """Jinja source for ``template``: a shipped name, a file path, Jinja text, or None.

    None means the tokenizer's own ``chat_template``; a tokenizer without one is an error that lists
    the shipped alternatives.
    """
    if template is None:
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # multiple named templates: the default one
            own = own.get("default")
        if not own:
            raise InstructkitError("the tokenizer has no chat_template; choose one of the shipped templates "
                                   f"({', '.join(shipped_templates())}) or pass a .jinja file")
        return own
    if "{%" in template or "{{" in template:  # before any path test: long Jinja text is no valid file name
        return template
    shipped = TEMPLATE_DIR / f"{template}.jinja"
    if shipped.is_file():
        return shipped.read_text()
    p = Path(template)
    if p.is_file():
        return p.read_text()
    raise InstructkitError(f"unknown chat template {template!r}: not a shipped template "
                           f"({', '.join(shipped_templates())}), an existing file, or Jinja text")


def _raise(msg: str) -> None:
    raise jinja2.exceptions.TemplateError(msg)


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=32)
def compile_template(source: str) -> jinja2.Template:
    # Mirrors transformers' chat-template environment (trim/lstrip blocks, loopcontrols, tojson,
    # raise_exception, strftime_now); the parity test against apply_chat_template guards it.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


@dataclass
class Rendered:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    def __iter__(self) -> Iterator[list[int]]:  # ``ids, labels = render(...)``
        yield self.input_ids
        yield self.labels

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _special_tokens(tokenizer: Any) -> dict[str, str]:
    out = {}
    for k in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        v = getattr(tokenizer, k, None)
        if v is not None:
            out[k] = str(v)
    return out


@dataclass
class Renderer:
    """Renders conversations with one tokenizer and template; counts what it truncates.

    ``max_length`` truncates on the right. A conversation whose trained tokens all fall past the cut
    raises :class:`DataError` (reason ``no_trained_tokens``) so callers count and report it instead of
    training on a sample that teaches nothing.
    """

    tokenizer: Any
    template: str | None = None
    max_length: int | None = None
    stats: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.source = resolve_template(self.template, self.tokenizer)
        self._tmpl = compile_template(self.source)
        self._specials = _special_tokens(self.tokenizer)
        self._tool_problem: str | None | bool = False  # False: not probed yet

    # -- text level -----------------------------------------------------------------------------
    def apply(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False,
              tools: Sequence[dict[str, Any]] | None = None) -> str:
        return self._tmpl.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                 tools=list(tools) if tools else None, documents=None, **self._specials)

    def check_tool_support(self) -> None:
        """Raise if this template cannot render tool use (probed once; see ``chat.template_check``)."""
        if self._tool_problem is False:
            from instructkit.chat.tool_support import tool_support_problem
            self._tool_problem = tool_support_problem(self)
        if self._tool_problem:
            raise InstructkitError(f"the chat template cannot train or run tool calls: {self._tool_problem}; "
                                   "use the shipped template 'chatml_tools' (--template chatml_tools, "
                                   "model.chat_template: chatml_tools) or a tools-aware template")

    def prompt_text(self, conversation: Conversation | Sequence[dict[str, Any]],
                    tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The text a model continues to answer: all messages plus the generation prompt."""
        if isinstance(conversation, Conversation):
            msgs, tools = conversation.to_messages(), tools or conversation.tools
        else:
            msgs = list(conversation)
        if tools or any(m.get("tool_calls") for m in msgs):  # plain-text tool turns render anywhere
            self.check_tool_support()
        return self.apply(msgs, add_generation_prompt=True, tools=tools)

    def text_and_spans(self, conversation: Conversation) -> tuple[str, list[tuple[int, int]]]:
        msgs, tools = conversation.to_messages(), conversation.tools
        if conversation.tools or any(m.tool_calls for m in conversation.messages):
            self.check_tool_support()
        text = self.apply(msgs, tools=tools)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(conversation.messages):
            if not m.trained:
                continue
            head = self.apply(msgs[:i], add_generation_prompt=m.role == "assistant", tools=tools) if i else ""
            # the last turn's prefix is the whole text: don't render it twice (hot path of data prepare)
            upto = (text if i == len(msgs) - 1 else self.apply(msgs[: i + 1], tools=tools)).rstrip()
            if not (text.startswith(upto) and upto.startswith(head)):
                # e.g. templates that rewrite earlier turns (drop reasoning) or stamp dates per call
                raise InstructkitError("the chat template is not prefix-stable (rendering a conversation's first "
                                       f"{i + 1} turns is not a prefix of the whole); cannot locate turn {i} "
                                       "for the loss mask. Use a shipped template or fix the template.")
            spans.append((len(head), len(upto)))
        return text, spans

    # -- token level ----------------------------------------------------------------------------
    @staticmethod
    def labels_from_offsets(ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                            spans: Sequence[tuple[int, int]]) -> list[int]:
        labels = [IGNORE_INDEX] * len(ids)
        j = 0
        for k, (s, _e) in enumerate(offsets):
            while j < len(spans) and s >= spans[j][1]:
                j += 1
            if j == len(spans):
                break
            if spans[j][0] <= s < spans[j][1]:
                labels[k] = ids[k]
        return labels

    def finish(self, ids: list[int], labels: list[int], conversation: Conversation | None = None) -> Rendered:
        """Apply truncation and the no-trained-token check to an already tokenized example."""
        truncated = False
        if self.max_length is not None and len(ids) > self.max_length:
            ids, labels, truncated = ids[: self.max_length], labels[: self.max_length], True
            self.stats["truncated"] += 1
        if all(x == IGNORE_INDEX for x in labels):
            self.stats["no_trained_tokens"] += 1
            why = (f"no trained token left after truncation to max_length={self.max_length}" if truncated
                   else "no trained token (no assistant content)")
            meta = conversation.meta if conversation is not None else {}
            raise DataError(why, path=meta.get("source"), line=meta.get("line"), field="messages",
                            reason="no_trained_tokens")
        self.stats["rendered"] += 1
        return Rendered(ids, labels, truncated)

    def __call__(self, conversation: Conversation) -> Rendered:
        text, spans = self.text_and_spans(conversation)
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        return self.finish(ids, self.labels_from_offsets(ids, enc["offset_mapping"], spans), conversation)

    def render_batch(self, conversations: Sequence[Conversation]) -> list[Rendered | DataError]:
        """Render many at once (one batched tokenizer call: the fast tokenizer's Rust side does the work).

        Errors are returned in place rather than raised so a caller can count them by reason.
        """
        texts, spans, out = [], [], []
        for c in conversations:
            try:
                t, s = self.text_and_spans(c)
            except DataError as e:
                t, s = None, e
            texts.append(t)
            spans.append(s)
        good = [t for t in texts if t is not None]
        enc = self.tokenizer(good, add_special_tokens=False, return_offsets_mapping=True) if good else None
        g = 0
        for c, t, s in zip(conversations, texts, spans):
            if t is None:
                out.append(s)
                continue
            ids = list(enc["input_ids"][g])
            labels = self.labels_from_offsets(ids, enc["offset_mapping"][g], s)
            g += 1
            try:
                out.append(self.finish(ids, labels, c))
            except DataError as e:
                out.append(e)
        return out


def render(conversation: Conversation, tokenizer: Any, template: str | None = None,
           max_length: int | None = None) -> Rendered:
    """``render(conversation, tokenizer, template) -> (input_ids, labels)``; see :class:`Renderer`."""
    return Renderer(tokenizer, template, max_length)(conversation)
