"""Server-side tool execution: ``instructkit serve MODEL --run-tools calculator,search``.

In this mode the server offers its own toolset in every chat request and runs the tool loop itself:
generate -> parse calls -> run them -> append results -> continue, up to ``max_calls`` calls, and
returns only the final answer: ``finish_reason`` is ``"stop"``, ``"length"`` when the answer was cut at
max_tokens, and ``"length"`` with ``tool_limit`` in the message when the model wanted more than
``max_calls`` calls (the answer is then the text of that turn). It is the same
:class:`~instructkit.toolset.loop.ToolLoop` that ``instructkit chat`` and evaluation use; here its model
is :class:`EngineLM`, which hands each round's prompts to the serving engine (so concurrent requests
still share the engine's batches). The calls that were run and their results come back in the
message's extra field ``tool_trace`` (the OpenAI SDK keeps unknown fields: ``message.model_extra``),
so a client can show what the server did. A client that disconnects stops the loop (``abandon``).

Client-side ``tools`` are refused in this mode: a turn mixing server tools and client tools would
need the server to run some calls and hand others back, which the API has no shape for.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any, Callable, Sequence

from instructkit.toolset.loop import ToolLoop


class EngineLM:
    """The eval API's ``generate(requests)`` over a serving engine, for the loop inside the server.

    ``make_params(n_prompt_tokens)`` builds the request's sampling parameters (max_tokens, temperature,
    context-length check: the HTTP layer's rules); each loop request's ``stop`` strings are added.
    Blocking: call it from a worker thread, never from the event loop.
    """

    def __init__(self, engine: Any, tokenizer: Any, make_params: Callable[[int], Any],
                 abandon: threading.Event | None = None):
        self.engine, self.tok, self.make_params = engine, tokenizer, make_params
        self.abandon = abandon or threading.Event()
        self.usage: Counter = Counter()  # prompt_tokens / completion_tokens summed over every round

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        from instructkit.lm.api import GenerateResult

        submitted = []
        try:
            for r in requests:  # submitted together so the engine batches them
                ids = self.tok(r.prompt, add_special_tokens=False)["input_ids"]
                p = self.make_params(len(ids))
                p = dataclasses.replace(p, n=1, stop=list(dict.fromkeys([*p.stop, *r.stop])))
                submitted.append(self.engine.submit(ids, p))
                self.usage["prompt_tokens"] += len(ids)
            out = []
            for q in submitted:
                while not q.done.wait(0.1):
                    if self.abandon.is_set():
                        raise RuntimeError("the client went away")
                c = q.outputs[0]
                if c is None or c.finish_reason in ("error", "cancelled"):
                    raise RuntimeError(f"generation {c.finish_reason if c else 'failed'} inside the tool loop")
                self.usage["completion_tokens"] += len(c.token_ids)
                out.append(GenerateResult([c.text], [len(c.token_ids)], [c.finish_reason]))
            return out
        finally:
            for q in submitted:
                if not q.done.is_set():
                    q.cancel()


@dataclasses.dataclass
class ServerTools:
    """The toolset the server runs itself, and the loop's call limit."""

    toolset: Any
    max_calls: int = 4

    @classmethod
    def load(cls, spec: str, *, index: str | None = None, max_calls: int = 4) -> "ServerTools":
        from instructkit.toolset.registry import load_toolset

        return cls(load_toolset(spec, **({"index": index} if index else {})), max_calls)

    def run(self, lm: EngineLM, renderer: Any, parser: Any, messages: list[dict[str, Any]],
            n: int = 1) -> list[tuple[dict[str, Any], str]]:
        """``n`` independent runs of the loop on ``messages``: ``(assistant message, finish_reason)`` each."""
        loop = ToolLoop(lm, self.toolset, renderer, parser, max_calls=self.max_calls)
        out = []
        for res in loop.run_many([messages] * n):
            trace, results = [], {m.tool_call_id: m.content for m in res.messages if m.role == "tool"}
            for m in res.messages[len(messages):]:
                for c in m.tool_calls or []:
                    trace.append({"name": c.name, "arguments": c.arguments, "result": results.get(c.id)})
            msg = {"role": "assistant", "content": res.final, "refusal": None, "tool_trace": trace}
            finish = "length" if res.finish_reason == "length" else "stop"
            if res.stopped == "max_calls":  # the model wanted more calls than allowed: say so
                msg["tool_limit"] = {"max_calls": self.max_calls, "reached": True}
                finish = "length"
            out.append((msg, finish))
        return out


def respond(state: Any, body: Any, messages: list[dict[str, Any]], shape: Any,
            make_params: Callable[[int], Any], abandon: threading.Event | None = None) -> dict[str, Any]:
    """The chat completion of a ``--run-tools`` server (called from a worker thread by the chat route)."""
    from instructkit.lm.engine import QueueFull
    from instructkit.serve.protocol import APIError
    from instructkit.serve.responses import usage

    if body.logprobs:
        raise APIError(400, "logprobs are not supported when the server runs tools (--run-tools)",
                       param="logprobs", code="unsupported")
    hook = state.tool_hook
    lm = EngineLM(state.engine, state.tokenizer, make_params, abandon)
    try:
        outs = hook.server.run(lm, state.renderer, hook.parser, messages, n=body.n or 1)
    except QueueFull as e:
        raise APIError(429, f"The server is busy ({e}); retry shortly.", code="rate_limit_exceeded",
                       headers={"Retry-After": "1"}) from None
    except (ValueError, RuntimeError) as e:  # the engine refused a round's prompt, or generation failed
        raise APIError(500 if isinstance(e, RuntimeError) else 400, str(e), code="engine_error") from None
    choices = [shape.chat_choice(i, msg, finish, None) for i, (msg, finish) in enumerate(outs)]
    return shape.chat(choices, usage(lm.usage["prompt_tokens"], lm.usage["completion_tokens"]))
