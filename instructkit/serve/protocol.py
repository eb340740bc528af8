"""OpenAI API request bodies (pydantic) and the error shape.

Unknown fields are rejected (``extra="forbid"``) the way OpenAI does ("Unrecognized request argument"),
and parameters the server cannot honour are refused rather than silently ignored. Responses are plain
dicts built in ``responses.py`` (they must match the OpenAI wire format byte for byte, not a schema).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_LOGIT_BIAS = 300         # entries (OpenAI's limit)
INT64 = (-(1 << 63), (1 << 63) - 1)
_TOKEN_KEY = re.compile(r"-?[0-9]+")             # ASCII digits only: "²".isdigit() is True, int("²") raises
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class APIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    TYPES = {429: "rate_limit_error"}   # every other 4xx (409 too): invalid_request_error; 5xx: server_error

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        kind = self.TYPES.get(self.status, "invalid_request_error" if 400 <= self.status < 500 else "server_error")
        return {"error": {"message": self.message, "type": kind,
                          "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: Optional[bool] = None   # accepted for SDK compatibility; we never pad chunks


class ContentPart(_Strict):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    # tool/assistant messages carry fields (tool_calls, tool_call_id, name) the tool loop uses
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content)
        return self.content or ""


class _Common(_Strict):
    model: str
    max_tokens: Optional[int] = Field(None, ge=0)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=INT64[0], le=INT64[1])   # int64, as OpenAI and vLLM
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: Optional[dict[str, float]] = None
    user: Optional[str] = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> list[str]:
        v = [v] if isinstance(v, str) else list(v or [])
        if len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, v: Any) -> Any:
        if v is None:
            return v
        if len(v) > MAX_LOGIT_BIAS:
            raise ValueError(f"at most {MAX_LOGIT_BIAS} entries")
        for k, b in v.items():
            if not _TOKEN_KEY.fullmatch(k):
                raise ValueError(f"key {k!r} is not a token id (a decimal integer)")
            if not (math.isfinite(b) and -100 <= b <= 100):
                raise ValueError(f"bias {b} for token {k} is outside -100..100")
        return v


class ChatCompletionRequest(_Common):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=0)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    # tools / tool_choice / parallel_tool_calls are carried to the tool-call hook (see app.py)
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Union[str, dict[str, Any], None] = None
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[dict[str, Any]] = None
    metadata: Optional[dict[str, str]] = None
    store: Optional[bool] = None
    service_tier: Optional[str] = None
    reasoning_effort: Optional[str] = None

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: Any) -> Any:
        for i, t in enumerate(v or []):
            fn = t.get("function")
            if t.get("type") != "function":
                raise ValueError(f"tools[{i}].type must be 'function'")
            if not isinstance(fn, dict):
                raise ValueError(f"tools[{i}].function is missing (an object with name, description, parameters)")
            if not isinstance(fn.get("name"), str) or not _FUNCTION_NAME.fullmatch(fn["name"]):
                raise ValueError(f"tools[{i}].function.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -")
            if not isinstance(fn.get("parameters", {}), dict) or not isinstance(fn.get("description", ""), str):
                raise ValueError(f"tools[{i}].function: parameters must be an object, description a string")
        return v


class CompletionRequest(_Common):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    best_of: Optional[int] = Field(None, ge=1)
    suffix: Optional[str] = None


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable line from pydantic/FastAPI validation errors, and the offending parameter."""
    e = errors[0]
    loc = [str(x) for x in e.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    if e.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if e.get("type") == "json_invalid":
        return "We could not parse the JSON body of your request (invalid JSON).", None
    msg = e.get("msg", "invalid value")
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param
