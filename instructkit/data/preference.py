"""Preference data: read ``{prompt | messages, chosen, rejected}`` and ranked lists; render pairs whose
chosen and rejected sequences share the prompt's tokens exactly.

Record shapes (detected per record from its keys):

* pair, plain: ``{"prompt": str, "chosen": str, "rejected": str, "system"?: str}``; the prompt becomes
  a user turn and each completion an assistant turn (as the SFT ``prompt_completion`` format does), so
  the chat template of the recipe applies;
* pair, conversational (TRL / UltraFeedback): ``prompt`` or ``messages`` is a list of
  ``{"role", "content"}`` messages and ``chosen``/``rejected`` are strings or lists of messages
  (usually one assistant message); without a prompt, ``chosen`` and ``rejected`` are whole
  conversations and the prompt is their longest common prefix of messages;
* ranked (InstructGPT's K answers per prompt): ``{"prompt" | "messages", "ranked": [best, ..., worst]}``
  or ``{"prompt" | "messages", "completions": [...], "scores": [...]}`` (higher is better) -> all
  K(K-1)/2 pairs; equal scores make no pair and are counted (``tied_pairs``), never silently lost.

Rendering: each side is rendered as one conversation through :class:`instructkit.chat.Renderer` with
only the completion trained, so the completion span comes from the full render's offsets (as for SFT).
The prompt tokens of chosen and rejected must then be identical: a tokenizer that merges across the
prompt/completion boundary would otherwise compare two different prompts (TRL slices by prefix and
only warns). A mismatch stops with a token diff (reason ``prompt_mismatch``). Masks never look at the
pad id, so the final ``<|im_end|>`` of both sides is trained even where pad == eos.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from instructkit.chat.conversation import Conversation, Message
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.data.formats import OPENAI_ROLES
from instructkit.data.readers import ON_ERROR, SkipReport, _check_choice, expand_paths, iter_records
from instructkit.errors import DataError, InstructkitError

PREFERENCE_FORMATS = ("pair", "ranked")


@dataclass
class PreferencePair:
    """One comparison: the prompt messages and the preferred / dispreferred continuations."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)

    def conversation(self, side: str) -> Conversation:
        prompt = [Message(m.role, m.content, m.name, False) for m in self.prompt]
        done = [Message(m.role, m.content, m.name, m.role == "assistant") for m in getattr(self, side)]
        return Conversation(prompt + done, meta=dict(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": [m.to_dict() for m in self.prompt], "chosen": [m.to_dict() for m in self.chosen],
                "rejected": [m.to_dict() for m in self.rejected]}


@dataclass
class RenderedPair:
    chosen_ids: list[int]
    chosen_labels: list[int]
    rejected_ids: list[int]
    rejected_labels: list[int]
    prompt_len: int  # tokens shared by both sides before the first trained token


# -- record -> messages ---------------------------------------------------------------------------------
def _messages(value: Any, fld: str) -> list[Message]:
    if isinstance(value, str):
        return [Message("user" if fld in ("prompt", "messages") else "assistant", value)]
    if not isinstance(value, list) or not value:
        raise DataError(f"expected a string or a non-empty list of messages, got {type(value).__name__}",
                        field=fld, reason="wrong_type")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError("a message needs 'role' and 'content'", field=f"{fld}[{i}]", reason="missing_field")
        role = OPENAI_ROLES.get(m["role"])
        if role is None:
            raise DataError(f"unknown role {m['role']!r}", field=f"{fld}[{i}].role", reason="unknown_role")
        if not isinstance(m["content"], str):
            raise DataError("content must be a string", field=f"{fld}[{i}].content", reason="wrong_type")
        out.append(Message(role, m["content"], m.get("name")))
    return out


def _prompt(rec: dict[str, Any]) -> list[Message] | None:
    key = "prompt" if "prompt" in rec else "messages" if "messages" in rec else None
    if key is None:
        return None
    msgs = _messages(rec[key], key)
    if isinstance(rec.get("system"), str) and rec["system"] and msgs[0].role != "system":
        msgs.insert(0, Message("system", rec["system"]))
    return msgs


def _completion(value: Any, fld: str) -> list[Message]:
    msgs = _messages(value, fld)
    if not any(m.role == "assistant" and m.content.strip() for m in msgs):
        raise DataError("no non-empty assistant answer", field=fld, reason="empty_assistant")
    return msgs


def detect_preference_format(rec: Any) -> str:
    if not isinstance(rec, dict):
        raise DataError(f"record is a {type(rec).__name__}, expected an object", reason="wrong_type")
    if "chosen" in rec or "rejected" in rec:
        return "pair"
    if "ranked" in rec or "completions" in rec:
        return "ranked"
    raise DataError(f"not a preference record (keys {sorted(rec)}; expected chosen/rejected, ranked, or "
                    "completions + scores)", reason="unknown_format")


def convert_pair(rec: dict[str, Any]) -> list[PreferencePair]:
    for k in ("chosen", "rejected"):
        if rec.get(k) is None:
            raise DataError("missing", field=k, reason="missing_field")
    prompt = _prompt(rec)
    if prompt is None:  # whole conversations: the prompt is the common prefix
        c, r = _messages(rec["chosen"], "chosen"), _messages(rec["rejected"], "rejected")
        n = 0
        while n < min(len(c), len(r)) and c[n].to_dict() == r[n].to_dict():
            n += 1
        if n == 0:
            raise DataError("no prompt field and chosen/rejected share no leading message", field="prompt",
                            reason="missing_field")
        prompt, chosen, rejected = c[:n], c[n:], r[n:]
        if not chosen or not rejected:
            raise DataError("chosen and rejected are the same conversation", field="chosen", reason="identical")
        _completion([m.to_dict() for m in chosen], "chosen")
        _completion([m.to_dict() for m in rejected], "rejected")
    else:
        chosen, rejected = _completion(rec["chosen"], "chosen"), _completion(rec["rejected"], "rejected")
    if [m.to_dict() for m in chosen] == [m.to_dict() for m in rejected]:
        raise DataError("chosen and rejected are identical", field="rejected", reason="identical")
    return [PreferencePair(prompt, chosen, rejected)]


def convert_ranked(rec: dict[str, Any], tied: Counter) -> list[PreferencePair]:
    prompt = _prompt(rec)
    if prompt is None:
        raise DataError("missing (a ranked record needs prompt or messages)", field="prompt",
                        reason="missing_field")
    if "ranked" in rec:
        items = rec["ranked"]
        if not isinstance(items, list):
            raise DataError("expected a list, best first", field="ranked", reason="wrong_type")
        scores = [-float(i) for i in range(len(items))]
        fld = "ranked"
    else:
        items, scores, fld = rec["completions"], rec.get("scores"), "completions"
        if not isinstance(items, list) or not isinstance(scores, list) or len(scores) != len(items):
            raise DataError("completions and scores must be lists of the same length", field="scores",
                            reason="wrong_type")
        if not all(isinstance(s, (int, float)) for s in scores):
            raise DataError("scores must be numbers", field="scores", reason="wrong_type")
    if len(items) < 2:
        raise DataError("fewer than 2 answers: no pair", field=fld, reason="too_few_answers")
    answers = [_completion(a, f"{fld}[{i}]") for i, a in enumerate(items)]
    out = []
    for i, j in itertools.combinations(range(len(items)), 2):
        if scores[i] == scores[j]:
            tied["tied_pairs"] += 1
            continue
        hi, lo = (i, j) if scores[i] > scores[j] else (j, i)
        out.append(PreferencePair(prompt, answers[hi], answers[lo], {"ranks": [hi, lo]}))
    return out


def read_preferences(paths: Any, *, format: str = "auto", on_error: str = "raise",
                     report: SkipReport | None = None, limit: int | None = None) -> Iterator[PreferencePair]:
    """Stream pairs from files/folders/globs; ``meta = {source, line}``. Tied ranked pairs are counted in
    ``report.counts["tied_pairs"]``; rejected records by reason, as for SFT data."""
    _check_choice(format, ("auto", *PREFERENCE_FORMATS), "preference format")
    _check_choice(on_error, ON_ERROR, "on_error")
    report = report if report is not None else SkipReport()
    files = expand_paths(paths)

    def gen() -> Iterator[PreferencePair]:
        n_out = 0
        for f in files:
            for n, rec in iter_records(f):
                if isinstance(rec, DataError):
                    ON_ERROR[on_error](rec, report)
                    continue
                try:
                    fmt = detect_preference_format(rec) if format == "auto" else format
                    tied: Counter = Counter()
                    pairs = convert_pair(rec) if fmt == "pair" else convert_ranked(rec, tied)
                    report.counts.update(tied)
                except DataError as e:
                    ON_ERROR[on_error](e.at(str(f), n), report)
                    continue
                for p in pairs:
                    p.meta.update(source=str(f), line=n)
                    yield p
                    n_out += 1
                    if limit is not None and n_out >= limit:
                        return

    return gen()


# -- rendering ---------------------------------------------------------------------------------------------
def _token_diff(tokenizer: Any, a: Sequence[int], b: Sequence[int]) -> str:
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    show = lambda ids: [tokenizer.convert_ids_to_tokens(int(t)) for t in ids[max(0, k - 2):k + 3]]  # noqa: E731
    return f"first difference at token {k}: chosen {show(a)} vs rejected {show(b)}"


def _prompt_len(labels: Sequence[int]) -> int:
    return next((i for i, x in enumerate(labels) if x != IGNORE_INDEX), len(labels))


def render_pair(renderer: Renderer, pair: PreferencePair) -> RenderedPair:
    """Render both sides; raise :class:`DataError` (``prompt_mismatch``) with a token diff if their prompt
    tokens differ, ``no_trained_tokens`` if truncation left a side nothing to score."""
    src, line = pair.meta.get("source"), pair.meta.get("line")
    sides = []
    for side in ("chosen", "rejected"):
        try:
            sides.append(renderer(pair.conversation(side).validate()))
        except DataError as e:
            raise DataError(e.detail, path=src, line=line, field=side, reason=e.reason) from None
    (ci, cl), (ri, rl) = sides
    pc, pr = _prompt_len(cl), _prompt_len(rl)
    if pc != pr or ci[:pc] != ri[:pr]:
        raise DataError("chosen and rejected do not share the prompt's tokens ("
                        + _token_diff(renderer.tokenizer, ci[:pc], ri[:pr]) + "); the tokenizer merges across the "
                        "prompt/answer boundary: end the prompt or start the answers differently",
                        path=src, line=line, field="prompt", reason="prompt_mismatch")
    return RenderedPair(ci, cl, ri, rl, pc)


def render_pairs(pairs: Iterable[PreferencePair], tokenizer: Any, template: str | None, max_length: int | None,
                 on_error: str = "raise", report: SkipReport | None = None) -> tuple[list[RenderedPair], int]:
    """Rendered pairs, and how many sides were truncated to ``max_length`` (kept, reported by the caller)."""
    renderer = Renderer(tokenizer, template, max_length)
    report = report if report is not None else SkipReport()
    out = []
    for p in pairs:
        try:
            out.append(render_pair(renderer, p))
        except DataError as e:
            ON_ERROR[on_error](e, report)
    return out, renderer.stats.get("truncated", 0)


def fingerprint_pairs(pairs: Sequence[RenderedPair]) -> str:
    """Digest of the exact token ids and masks: changes with the data, tokenizer, template and max length."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.chosen_ids, p.chosen_labels, p.rejected_ids, p.rejected_labels]).encode())
    return h.hexdigest()[:24]


def load_pairs(paths: Any, tokenizer: Any, *, template: str | None, max_length: int | None, on_error: str,
               limit: int | None = None) -> tuple[list[RenderedPair], SkipReport, int]:
    """Read + render; returns the pairs, the skip report (with ``tied_pairs``) and the truncation count."""
    if not paths:
        raise InstructkitError("data.paths is empty: name the preference files in the recipe")
    report = SkipReport()
    pairs = read_preferences(paths, on_error=on_error, report=report, limit=limit)
    out, truncated = render_pairs(pairs, tokenizer, template, max_length, on_error, report)
    return out, report, truncated
