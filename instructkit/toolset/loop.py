"""The tool loop: generate -> parse tool calls -> run tools -> append results -> continue, up to K calls.

One implementation serves ``instructkit chat``, the server and evaluation. It drives any model with
the eval API's ``generate(requests)`` (a local :class:`~instructkit.lm.hf.HFModel`, an endpoint, a
scripted model in tests) and steps many conversations together, so each round is one batched
``generate`` call. Prompts are rendered here with the tools-aware chat template (``tools=`` schemas in
the prompt, earlier calls and results as structured turns), so training and inference see the same
text. :class:`ToolLM` wraps a model so that evaluation's generative tasks run through the loop
(``--tools calculator``) while every other request passes through unchanged.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from instructkit.chat.conversation import Message, ToolCall
from instructkit.toolset.registry import Toolset

DEFAULT_MAX_CALLS = 4


@dataclass
class LoopResult:
    messages: list[Message]          # the conversation as it grew: assistant calls, tool results, answer
    final: str                       # the answer shown to the user (the last assistant text)
    #: made = call blocks the model emitted; parsed = valid ones; parse_failed / run_failed = errors
    stats: Counter = field(default_factory=Counter)
    stopped: str = "answer"          # answer | max_calls
    n_tokens: int = 0
    #: why the last generation ended (stop | length), when the model says so
    finish_reason: str = "stop"


def _new_id() -> str:
    return "call_" + uuid.uuid4().hex[:12]


def execute_calls(toolset: Toolset, calls: Sequence[ToolCall], stats: Counter) -> list[Message]:
    """Run each call (errors become results) and return the ``tool`` turns; counts into ``stats``.

    The one place calls are executed: the loop below, ``instructkit chat --tools`` and the server's
    own-tools mode all go through it.
    """
    out = []
    for c in calls:
        res = toolset.run(c)
        stats["executed"] += 1
        stats["run_failed"] += 0 if res.ok else 1
        out.append(Message("tool", res.content, name=c.name, tool_call_id=c.id))
    return out


@dataclass
class ToolLoop:
    """``ToolLoop(lm, toolset, renderer, parser).run(messages)``; see the module docstring.

    ``max_calls`` bounds the tool calls executed per conversation; when a turn would exceed it the
    loop stops and that turn's text is the answer (``stopped = "max_calls"``).
    """

    lm: Any
    toolset: Toolset
    renderer: Any
    parser: Any
    max_calls: int = DEFAULT_MAX_CALLS
    max_new_tokens: int = 256
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)

    def _requests(self, convs: list[list[Message]]) -> list[Any]:
        from instructkit.lm.api import GenerateRequest

        tools = self.toolset.schemas or None
        return [GenerateRequest(prompt=self.renderer.prompt_text([m.to_dict() for m in c], tools=tools),
                                max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                stop=list(self.stop) + list(self.parser.stop)) for c in convs]

    def run(self, messages: Sequence[dict[str, Any] | Message]) -> LoopResult:
        return self.run_many([messages])[0]

    def run_many(self, batch: Sequence[Sequence[dict[str, Any] | Message]]) -> list[LoopResult]:
        convs = [[m if isinstance(m, Message) else Message.from_dict(m, i) for i, m in enumerate(msgs)]
                 for msgs in batch]
        results = [LoopResult(c, "") for c in convs]
        active = list(range(len(convs)))
        while active:
            outs = self.lm.generate(self._requests([convs[i] for i in active]))
            still = []
            for i, out in zip(active, outs):
                r = results[i]
                r.n_tokens += sum(out.n_tokens[:1])
                r.finish_reason = (getattr(out, "finish_reasons", None) or ["stop"])[0]
                p = self.parser.parse(out.texts[0])
                r.stats["made"] += len(p.calls) + len(p.errors)
                r.stats["parsed"] += len(p.calls)
                r.stats["parse_failed"] += len(p.errors)
                r.stats["turns"] += 1
                if not p.calls:
                    r.final = p.content
                    convs[i].append(Message("assistant", p.content))
                    continue
                if r.stats["executed"] + len(p.calls) > self.max_calls:
                    r.final, r.stopped = p.content, "max_calls"
                    r.stats["limit_hit"] += 1
                    continue
                calls = [ToolCall(c.name, c.arguments, c.id or _new_id()) for c in p.calls]
                convs[i].append(Message("assistant", p.content, tool_calls=calls))
                convs[i] += execute_calls(self.toolset, calls, r.stats)
                still.append(i)
            active = still
        for r in results:
            r.stats["failed"] = r.stats["parse_failed"] + r.stats["run_failed"]
        return results


class ToolLM:
    """An eval-API model whose ``generate`` runs each request through the tool loop.

    A request's ``prompt`` becomes the user turn (``messages`` are used as given); the returned text is
    the final answer. ``loglikelihood`` passes through. ``stats`` sums the loop counters over all
    requests and ``traces`` keeps each request's conversation (by request key) for reports.
    """

    def __init__(self, lm: Any, loop: ToolLoop):
        self.lm, self.loop = lm, loop
        self.name = f"{getattr(lm, 'name', 'model')}+tools({','.join(loop.toolset.tools)})"
        self.batch_size = getattr(lm, "batch_size", 1)
        self.dtype = getattr(lm, "dtype", None)
        self.stats: Counter = Counter()
        self.traces: dict[Any, LoopResult] = {}

    @property
    def fingerprint(self) -> str:
        base = getattr(self.lm, "fingerprint", self.name)
        return f"{base}|tools={','.join(self.loop.toolset.tools)}|{self.loop.parser.name}|k={self.loop.max_calls}"

    def loglikelihood(self, requests: Sequence[Any]) -> list[Any]:
        return self.lm.loglikelihood(requests)

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        from instructkit.lm.api import GenerateResult

        expanded, owner = [], []
        for k, r in enumerate(requests):
            msgs = r.messages or [{"role": "user", "content": r.prompt or ""}]
            for _ in range(max(1, r.n)):
                expanded.append(msgs)
                owner.append(k)
        self.loop.max_new_tokens = max(r.max_new_tokens for r in requests) if requests else 256
        res = self.loop.run_many(expanded)
        texts: list[list[str]] = [[] for _ in requests]
        ntok: list[list[int]] = [[] for _ in requests]
        for k, r in zip(owner, res):
            texts[k].append(r.final)
            ntok[k].append(r.n_tokens)
            self.stats.update(r.stats)
            self.traces[requests[k].key] = r
        return [GenerateResult(t, n) for t, n in zip(texts, ntok)]


def with_tools(lm: Any, tools: str | list[str], *, template: str = "chatml_tools", parser: str = "hermes",
               max_calls: int = DEFAULT_MAX_CALLS, index: str | None = None) -> ToolLM:
    """Wrap a local eval model (``HFModel``) so its generative requests run through the tool loop
    (``instructkit eval --tools calculator``). The prompt is rendered here with ``template``, so the
    model's own chat-template wrapping is switched off for the wrapped requests."""
    from instructkit.chat.render import Renderer
    from instructkit.errors import InstructkitError
    from instructkit.chat.tool_parsers import get_parser
    from instructkit.toolset.registry import load_toolset

    tok = getattr(lm, "tokenizer", None)
    if tok is None:
        raise InstructkitError("--tools needs a local model (its tokenizer renders the tool prompt); "
                               "for an endpoint, use its own tool support")
    toolset = load_toolset(tools, **({"index": index} if index else {}))
    if hasattr(lm, "apply_chat_template"):
        lm.apply_chat_template = False  # the loop renders the chat (with tools) itself
    return ToolLM(lm, ToolLoop(lm, toolset, Renderer(tok, template), get_parser(parser), max_calls=max_calls))
