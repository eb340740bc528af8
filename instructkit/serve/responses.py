"""OpenAI wire-format bodies: completions, chat completions, their stream chunks, usage and logprobs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Sequence

from instructkit.lm.sampling import TokenLogprob


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(obj: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"


class Shape:
    """Common fields of one response (id, created, model) and the token -> text helper."""

    def __init__(self, kind: str, model: str, tokenizer: Any):
        self.kind, self.model, self.tok = kind, model, tokenizer
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())

    def head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "system_fingerprint": None}

    def token_text(self, token_id: int) -> str:
        return self.tok.decode([token_id])

    # -- logprobs ---------------------------------------------------------------------------------------
    def chat_logprobs(self, lps: Sequence[TokenLogprob] | None) -> dict[str, Any] | None:
        if lps is None:
            return None
        def one(t: int, lp: float) -> dict[str, Any]:
            s = self.token_text(t)
            return {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}
        return {"content": [dict(one(x.token_id, x.logprob), top_logprobs=[one(t, lp) for t, lp in x.top])
                            for x in lps], "refusal": None}

    def completion_logprobs(self, lps: Sequence[TokenLogprob | None] | None, offset0: int = 0,
                            offsets: Sequence[int] | None = None) -> dict[str, Any] | None:
        """Legacy completions format; ``None`` entries (the first prompt token) have no log-prob."""
        if lps is None:
            return None
        tokens, token_lps, tops, text_offset = [], [], [], []
        pos = offset0
        for k, x in enumerate(lps):
            s = self.token_text(x.token_id) if x is not None else ""
            tokens.append(s)
            token_lps.append(None if x is None or x.logprob is None else x.logprob)
            tops.append(None if x is None or x.logprob is None else {self.token_text(t): lp for t, lp in x.top})
            text_offset.append(offsets[k] if offsets is not None else pos)
            pos += len(s)
        return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": text_offset}

    # -- whole responses --------------------------------------------------------------------------------
    def chat(self, choices: list[dict[str, Any]], use: dict[str, int]) -> dict[str, Any]:
        return dict(self.head("chat.completion"), choices=choices, usage=use)

    @staticmethod
    def chat_choice(index: int, message: dict[str, Any], finish: str, logprobs: Any) -> dict[str, Any]:
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}

    def completion(self, choices: list[dict[str, Any]], use: dict[str, int]) -> dict[str, Any]:
        return dict(self.head("text_completion"), choices=choices, usage=use)

    @staticmethod
    def completion_choice(index: int, text: str, finish: str, logprobs: Any) -> dict[str, Any]:
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    # -- stream chunks ------------------------------------------------------------------------------------
    def chunk(self, index: int, *, text: str | None = None, role: bool = False, finish: str | None = None,
              logprobs: Any = None, include_usage: bool = False) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text:
                delta = {"content": text}
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            out = dict(self.head("chat.completion.chunk"), choices=[choice])
        else:
            choice = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
            out = dict(self.head("text_completion"), choices=[choice])
        if include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, use: dict[str, int]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return dict(self.head(obj), choices=[], usage=use)
