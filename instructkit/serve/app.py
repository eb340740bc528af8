"""The FastAPI application: OpenAI routes over the engine.

``GET /health`` (open), ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``.
Every error leaves in OpenAI's shape (``protocol.APIError``); validation errors are 400, not FastAPI's 422.
The chat handler is deliberately short: render -> params -> run/stream -> message. ``state.tool_hook``
is where tool calls plug in (tools rendered into the prompt, ``tool_calls`` parsed out of the text).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from instructkit.serve.adapters import ServedModels
from instructkit.serve.guard import Guard
from instructkit.serve.protocol import APIError, ChatCompletionRequest, CompletionRequest, validation_message
from instructkit.serve.responses import Shape, usage
from instructkit.serve.streaming import Run, unless_disconnected

log = logging.getLogger("instructkit.serve")


class ServerState:
    """What the routes share. ``engine`` is None while the model loads (every route but /health: 503)."""

    def __init__(self, served: ServedModels, *, api_key: Optional[str] = None, default_max_tokens: int = 1024):
        self.served, self.api_key, self.default_max_tokens = served, api_key, default_max_tokens
        self.engine: Any = None
        self.tokenizer: Any = None
        self.renderer: Any = None
        self.load_error: Optional[str] = None
        #: issue #13 plugs tool calling in here: ``hook(request, messages) -> (prompt_text, parse)``
        self.tool_hook: Any = None
        #: ``--run-tools``: a :class:`instructkit.serve.tools.ServerTools` the server runs itself
        self.server_tools: Any = None

    def ready(self, engine: Any, tokenizer: Any, renderer: Any) -> None:
        self.tokenizer, self.renderer = tokenizer, renderer
        if self.tool_hook is None:  # issue #13: tools rendered into the prompt, tool_calls parsed out
            from instructkit.serve.tool_hook import ToolHook
            self.tool_hook = ToolHook(renderer, server=self.server_tools)
        self.engine = engine.start()


def _adapter_of(state: ServerState, model: str) -> Optional[str]:
    try:
        return state.served.resolve(model)
    except KeyError:
        raise APIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                       param="model", code="model_not_found") from None


def _params(state: ServerState, body: Any, n_prompt: int, max_tokens: Optional[int], default: int,
            adapter: Optional[str], logprobs: bool, top: int, where: str) -> Any:
    from instructkit.lm.sampling import SamplingParams

    ctx = state.engine.max_context
    if max_tokens is None:
        max_tokens = max(0, min(default, ctx - n_prompt))
    if n_prompt + max_tokens > ctx or n_prompt >= ctx:
        raise APIError(400, f"This model's maximum context length is {ctx} tokens. However, you requested "
                            f"{n_prompt + max_tokens} tokens ({n_prompt} in the {where}, {max_tokens} in the "
                            "completion). Please reduce the length of the {where} or completion.".replace("{where}", where),
                       param=where, code="context_length_exceeded")
    bias: dict[int, float] = {}
    vocab = len(state.tokenizer)
    for k, v in (body.logit_bias or {}).items():
        if not k.lstrip("-").isdigit() or not 0 <= int(k) < vocab or not -100 <= v <= 100:
            raise APIError(400, f"logit_bias: invalid token id {k!r} or bias {v} (ids 0..{vocab - 1}, bias "
                                "-100..100)", param="logit_bias", code="invalid_value")
        bias[int(k)] = float(v)
    temperature = 1.0 if body.temperature is None else body.temperature
    return SamplingParams(max_tokens=max_tokens, temperature=temperature,
                          top_p=1.0 if body.top_p is None else body.top_p, n=body.n, stop=list(body.stop or []),
                          seed=body.seed, logprobs=logprobs, top_logprobs=top,
                          presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                          logit_bias=bias, adapter=adapter)


def _messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    out = []
    for m in body.messages:
        d = dict(m.model_extra or {})
        d.update(role="system" if m.role == "developer" else m.role, content=m.text())
        if m.name is not None:
            d["name"] = m.name
        out.append(d)
    return out


def api_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped error bodies for our errors and for request validation (the API and the arena UI)."""
    @app.exception_handler(APIError)
    async def _api_error(_req: Request, e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        msg, param = validation_message(list(e.errors()))
        return JSONResponse(APIError(400, msg, param=param, code="invalid_request").body(), status_code=400)


def build_app(state: ServerState) -> Any:
    app = FastAPI(title="instructkit serve", docs_url=None, redoc_url=None, openapi_url=None)
    api_error_handlers(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(APIError(e.status_code, str(e.detail)).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _crash(_req: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse(APIError(500, f"internal error: {type(e).__name__}").body(), status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine is None:
            return JSONResponse({"status": "error" if state.load_error else "loading"}, status_code=503)
        # admitting: popped from the queue, being prefilled (a long prefill must not look like a hang)
        return JSONResponse(dict({"status": "ok"}, **state.engine.status()))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": state.served.cards()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        _adapter_of(state, model_id)
        return next(c for c in state.served.cards() if c["id"] == model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        adapter = _adapter_of(state, body.model)
        if body.tools and state.tool_hook is None:
            raise APIError(400, "tools are not supported by this server yet", param="tools", code="unsupported")
        if body.response_format and body.response_format.get("type") != "text":
            raise APIError(400, "response_format: only {'type': 'text'} is supported", param="response_format",
                           code="unsupported")
        msgs, parse = _messages(body), None
        try:
            if state.tool_hook is not None and state.tool_hook.wants(body, msgs):
                text, parse = state.tool_hook(body, msgs)
            else:
                text = state.renderer.prompt_text(msgs)
        except ValueError as e:  # the tool hook refuses the request (template without tools, tool_choice)
            raise APIError(400, str(e), param="tools", code="unsupported") from None
        except Exception as e:  # the model's chat template refused these messages (jinja raise_exception)
            raise APIError(400, f"messages: the chat template cannot render them: {e}", param="messages") from None
        if body.stream and parse is not None:
            raise APIError(400, "stream with tools is not supported yet: use stream=false", param="stream",
                           code="unsupported")
        ids = await run_in_threadpool(lambda: state.tokenizer(text, add_special_tokens=False)["input_ids"])
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        params = _params(state, body, len(ids), max_tokens, state.default_max_tokens, adapter, body.logprobs,
                         body.top_logprobs or 0, "messages")
        shape = Shape("chat", body.model, state.tokenizer)
        if parse is not None and state.tool_hook.server is not None:  # --run-tools: the server runs the loop
            import threading

            from instructkit.serve.tools import respond
            make = lambda n: _params(state, body, n, max_tokens, state.default_max_tokens, adapter,  # noqa: E731
                                     False, 0, "messages")
            abandon = threading.Event()  # the client left: the loop stops at its next generation or call
            return await unless_disconnected(request, run_in_threadpool(respond, state, body, msgs, shape, make,
                                                                        abandon), abandon)
        run = Run(state.engine, shape, request, [ids], params)
        if body.stream:
            return run.stream(bool(body.stream_options and body.stream_options.include_usage))
        outs = await run.collect()
        from instructkit.serve.tool_hook import reply
        choices = [shape.chat_choice(i, *reply(c.text, c.finish_reason, parse), shape.chat_logprobs(c.logprobs))
                   for i, c in enumerate(outs)]
        return shape.chat(choices, usage(len(ids), sum(len(c.token_ids) for c in outs)))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        adapter = _adapter_of(state, body.model)
        if body.suffix:
            raise APIError(400, "suffix is not supported", param="suffix", code="unsupported")
        if body.best_of not in (None, body.n):
            raise APIError(400, "best_of other than n is not supported", param="best_of", code="unsupported")
        if body.echo and body.stream:
            raise APIError(400, "echo with stream is not supported", param="echo", code="unsupported")
        p = body.prompt
        prompts = [p] if isinstance(p, str) or (p and isinstance(p[0], int)) else list(p)
        if not prompts:
            raise APIError(400, "prompt is empty", param="prompt")
        tok = state.tokenizer
        enc = await run_in_threadpool(lambda: [tok(x, add_special_tokens=True, return_offsets_mapping=True)
                                               if isinstance(x, str) else None for x in prompts])
        ids = [list(e["input_ids"]) if e is not None else list(x) for e, x in zip(enc, prompts)]
        if any(not x for x in ids):
            raise APIError(400, "prompt has no tokens", param="prompt")
        _check_ids(ids, getattr(state.engine, "vocab_size", None) or len(tok))
        top = body.logprobs or 0
        params = _params(state, body, max(len(x) for x in ids), body.max_tokens, 16, adapter,
                         body.logprobs is not None, top, "prompt")
        shape = Shape("completion", body.model, tok)
        run = Run(state.engine, shape, request, ids, params)
        if body.stream:
            return run.stream(bool(body.stream_options and body.stream_options.include_usage))
        outs = await run.collect()
        choices = []
        for i, c in enumerate(outs):
            k = i // body.n
            text, lps = c.text, shape.completion_logprobs(c.logprobs)
            if body.echo:
                ptext = prompts[k] if isinstance(prompts[k], str) else tok.decode(ids[k])
                if body.logprobs is not None:
                    scored = await asyncio.wrap_future(state.engine.call(lambda: state.engine.score(ids[k], top, adapter)))
                    offs = [a for a, _ in enc[k]["offset_mapping"]] if enc[k] is not None else None
                    lps = shape.completion_logprobs(scored + list(c.logprobs or []), 0, None if offs is None else
                                                    offs + _offsets(shape, c.logprobs or [], len(ptext)))
                text = ptext + text
            choices.append(shape.completion_choice(i, text, c.finish_reason, lps))
        return shape.completion(choices, usage(sum(len(x) for x in ids), sum(len(c.token_ids) for c in outs)))

    return Guard(app, state)


def _check_ids(prompts: list[list[int]], vocab: int) -> None:
    """Token-id prompts: every id must index the model's vocabulary (a bad one would fail the batch)."""
    for k, ids in enumerate(prompts):
        for i, t in enumerate(ids):
            if not 0 <= t < vocab:
                where = f"prompt[{k}][{i}]" if len(prompts) > 1 else f"prompt[{i}]"
                raise APIError(400, f"{where}: token id {t} is out of range (0..{vocab - 1})", param="prompt",
                               code="invalid_value")


def _offsets(shape: Shape, lps: list[Any], start: int) -> list[int]:
    out, pos = [], start
    for x in lps:
        out.append(pos)
        pos += len(shape.token_text(x.token_id))
    return out
