"""ShareGPT cleaning, Vicuna/FastChat practice, with every drop counted by reason.

1. read a JSON list even when truncated (incremental decoding keeps every complete record), or JSONL;
2. HTML -> markdown (FastChat's conversion) only for messages that *are* HTML, never for code in a
   markdown message (:mod:`instructkit.synth.sharegpt_text`);
3. roles normalised; a leading assistant turn and a trailing unanswered user turn are trimmed (counted);
   empty messages, unknown roles and non-alternating conversations are dropped; optional FastChat rules:
   blocked words, blocked responses, too short;
4. optional language filter (``langdetect``, seeded) on the whole conversation's prose, code removed;
5. exact duplicates, then near duplicates (MinHash LSH over word 5-shingles, ``datasketch``);
6. conversations longer than ``max_tokens`` are split at turn boundaries, measured in the real tokens
   of the training chat template (FastChat estimates +6 per message and can emit empty pieces); each
   piece keeps the system prompt; a single turn pair that alone exceeds the limit is dropped (counted).

Two ledgers, each exact: conversations (``read = kept + every drop reason``; a conversation that loses
every turn pair to the length limit is one ``all_turn_pairs_longer_than_max_tokens`` drop) and pieces
(``pieces_written``, turn pairs dropped as too long, conversations split).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from instructkit.errors import DataError
from instructkit.synth.report import RunReport
from instructkit.synth.sharegpt_text import blocked_word, has_tag_outside_code, html_to_markdown, is_html, prose

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
         "bing": "assistant", "assistant": "assistant", "system": "system"}


def iter_records(path: str | Path, counts: dict[str, int]) -> Iterator[Any]:
    """Records of a JSON list (tolerating a truncated tail) or a JSONL file."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(p), reason="missing_file")
    text = p.read_text(encoding="utf-8", errors="replace")
    dec = json.JSONDecoder()
    i = len(text) - len(text.lstrip())
    if text[i: i + 1] == "[":
        i += 1
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text) or text[i] == "]":
                return
            try:
                rec, i = dec.raw_decode(text, i)
            except json.JSONDecodeError:
                counts["truncated_tail"] = 1  # the rest of the file is an unfinished record
                return
            yield rec
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    counts["invalid_json_line"] = counts.get("invalid_json_line", 0) + 1


def normalise(rec: Any, rep: RunReport, *, html_roles: tuple[str, ...] = ("assistant",),
              blocked_words: list[str] | None = None, blocked_responses: list[str] | None = None,
              min_chars: int = 0) -> dict[str, Any] | None:
    """Validated ``{id, system, messages}`` or None (the reason counted, once per conversation)."""
    turns = rec.get("conversations") if isinstance(rec, dict) else None
    if not isinstance(turns, list):
        return rep.drop("broken_record", str(rec)[:120])
    cid = str(rec.get("id", ""))
    system, msgs = rec.get("system") if isinstance(rec.get("system"), str) else None, []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("value"), str) or t.get("from") not in ROLES:
            return rep.drop("broken_or_unknown_role", cid)
        role, val = ROLES[t["from"]], t["value"]
        if blocked_words and (w := blocked_word(val, blocked_words)):  # FastChat checks the raw text
            return rep.drop("blocked_words", [cid, w])
        if role in html_roles and is_html(val):
            try:
                val = html_to_markdown(val)
            except Exception as e:  # bs4 rejects the markup (FastChat: "parser error"): counted, never a crash
                return rep.drop("html_parser_error", [cid, f"{type(e).__name__}: {e}"[:120]])
            rep.counts["html_converted_messages"] += 1
        elif "<" in val and has_tag_outside_code(val):
            rep.counts["tags_in_prose_left_as_is"] += 1  # markdown with a tag in it: not an HTML document
        val = val.strip()
        if role == "assistant" and blocked_responses and any(val.startswith(b) for b in blocked_responses):
            return rep.drop("blocked_response", [cid, val[:100]])
        if role == "system":
            if msgs:
                return rep.drop("system_not_first", cid)
            system = val
            continue
        if not val:
            return rep.drop("empty_message", cid)
        msgs.append({"role": role, "content": val})
    if msgs and msgs[0]["role"] == "assistant":
        msgs.pop(0)
        rep.counts["trimmed_leading_assistant"] += 1
    if msgs and msgs[-1]["role"] == "user":
        msgs.pop()
        rep.counts["trimmed_trailing_user"] += 1
    if not msgs:
        return rep.drop("empty_conversation", cid)
    if any(m["role"] != ("user" if k % 2 == 0 else "assistant") for k, m in enumerate(msgs)):
        return rep.drop("non_alternating", cid)
    if min_chars and sum(len(m["content"]) for m in msgs) < min_chars:
        return rep.drop("too_short", cid)
    return {"id": cid, "system": system, "messages": msgs}


def count_template_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the rendered chat (render to text, then encode: ``apply_chat_template(tokenize=True)``
    returns a BatchEncoding in transformers 5, whose ``len`` is its number of keys)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


PAIR_TOO_LONG = "turn_pairs_longer_than_max_tokens"  # piece ledger: turn pairs, not conversations


class Splitter:
    """Split at turn boundaries so each piece renders to at most ``max_tokens`` template tokens."""

    def __init__(self, tokenizer: Any, max_tokens: int):
        self.tok, self.max = tokenizer, max_tokens

    def n_tokens(self, system: str | None, msgs: list[dict[str, str]]) -> int:
        return count_template_tokens(self.tok, ([{"role": "system", "content": system}] if system else []) + msgs)

    def split(self, conv: dict[str, Any], rep: RunReport) -> list[dict[str, Any]]:
        sys, msgs = conv["system"], conv["messages"]
        if self.n_tokens(sys, msgs) <= self.max:
            return [conv]
        pairs = [msgs[i: i + 2] for i in range(0, len(msgs), 2)]
        # one render per pair, not per candidate piece: a piece costs the shared prefix (system part) once
        # plus each pair's own tokens; every piece is then checked with a real render, and a template
        # that is not additive falls back to rendering each candidate piece
        cost = [self.n_tokens(sys, p) for p in pairs]
        shared = cost[0] + cost[1] - self.n_tokens(sys, pairs[0] + pairs[1]) if len(pairs) > 1 else 0
        pieces = self._greedy(pairs, lambda cur, k: shared + sum(cost[i] - shared for i in cur + [k]) <= self.max)
        if any(self.n_tokens(sys, [m for i in p for m in pairs[i]]) > self.max for p in pieces):
            rep.counts["split_fallback_exact"] += 1
            pieces = self._greedy(pairs, lambda cur, k: self.n_tokens(sys, [m for i in cur + [k] for m in pairs[i]])
                                  <= self.max)
        lost = len(pairs) - sum(len(p) for p in pieces)  # pairs that alone exceed the limit: piece-level
        if lost:
            rep.counts[PAIR_TOO_LONG] += lost
            ex = rep.dropped.setdefault(PAIR_TOO_LONG, [])
            if len(ex) < rep.k:
                ex.append(conv["id"])
        if pieces:
            rep.counts["split_conversations"] += 1
        return [{"id": f"{conv['id']}_{j}", "system": sys, "messages": [m for i in p for m in pairs[i]]}
                for j, p in enumerate(pieces)]

    @staticmethod
    def _greedy(pairs: list, fits: Any) -> list[list[int]]:
        pieces: list[list[int]] = []
        cur: list[int] = []
        for k in range(len(pairs)):
            if fits(cur, k):
                cur.append(k)
                continue
            if cur:
                pieces.append(cur)
            cur = []
            if fits([], k):
                cur = [k]
        if cur:
            pieces.append(cur)
        return pieces


def _shingles(text: str, k: int = 5) -> set[bytes]:
    w = text.lower().split()
    return {" ".join(w[i: i + k]).encode() for i in range(max(1, len(w) - k + 1))}


def detect_language(messages: list[dict[str, str]], detect: Any, min_letters: int = 20) -> str | None:
    """langdetect's code for the conversation's prose (every message, code removed); None when the prose
    has fewer than ``min_letters`` letters (a code-only conversation has no language to detect)."""
    text = "\n".join(prose(m["content"]) for m in messages if m["role"] != "system")
    if sum(ch.isalpha() for ch in text) < min_letters:
        return None
    try:
        return detect(text)
    except Exception:  # langdetect.LangDetectException: no features in the text
        return "unknown"


def clean(cfg: Any, tokenizer: Any, progress: bool = True) -> tuple[list[dict], RunReport]:
    from datasketch import MinHash, MinHashLSH
    from tqdm.auto import tqdm

    rep = RunReport("clean-sharegpt", cfg.model_dump())
    read: dict[str, int] = {}
    convs = []
    opts = dict(html_roles=tuple(cfg.html_roles), blocked_words=cfg.blocked_words,
                blocked_responses=cfg.blocked_responses, min_chars=cfg.min_chars)
    for n, rec in enumerate(iter_records(cfg.input, read)):
        if cfg.limit and n >= cfg.limit:
            break
        rep.counts["read"] += 1
        c = normalise(rec, rep, **opts)
        if c is not None:
            convs.append(c)
    rep.counts.update(read)
    if cfg.languages:
        from langdetect import DetectorFactory, detect
        DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes the filter deterministic
        keep = []
        for c in tqdm(convs, desc="language", disable=not progress, leave=False):
            lang = detect_language(c["messages"], detect)
            if lang is None:
                rep.counts["language_undetectable_kept"] += 1  # code only: no prose to judge
                keep.append(c)
            elif lang in cfg.languages:
                keep.append(c)
            else:
                rep.drop(f"language:{lang}", [c["id"], c["messages"][0]["content"][:100]])
        convs = keep
    seen, lsh, unique = set(), MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm), []
    ids: set[str] = set()
    for i, c in enumerate(tqdm(convs, desc="dedup", disable=not progress, leave=False)):
        if c["id"] and c["id"] in ids:  # FastChat drops an id seen before; piece ids derive from it
            rep.drop("duplicate_id", c["id"])
            continue
        ids.add(c["id"])
        text = "\n".join(m["content"] for m in c["messages"])
        h = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
        if h in seen:
            rep.drop("exact_duplicate", c["id"])
            continue
        seen.add(h)
        mh = MinHash(num_perm=cfg.num_perm, seed=1)
        mh.update_batch(list(_shingles(text)))
        if lsh.query(mh):
            rep.drop("near_duplicate", c["id"])
            continue
        lsh.insert(str(i), mh)
        unique.append(c)
    splitter, items = Splitter(tokenizer, cfg.max_tokens), []
    for c in tqdm(unique, desc="split", disable=not progress, leave=False):
        pieces = splitter.split(c, rep)
        if not pieces:  # every turn pair alone exceeds the limit: the conversation is gone, counted once
            rep.drop("all_turn_pairs_longer_than_max_tokens", c["id"])
            continue
        rep.keep(c["messages"][0]["content"][:120])
        for p in pieces:
            msgs = ([{"role": "system", "content": p["system"]}] if p["system"] else []) + p["messages"]
            items.append({"id": p["id"], "messages": msgs,
                          "provenance": {"method": "clean-sharegpt", "source": str(cfg.input)}})
    rep.counts["pieces_written"] = len(items)
    rep.extra["ledger"] = ledger(rep)
    return items, rep


def ledger(rep: RunReport) -> dict[str, Any]:
    """Conversations (``read = kept + drops``, checked) and pieces, from the report's counts."""
    c = rep.counts
    drops = {k: c[k] for k in sorted(rep.dropped) if k != PAIR_TOO_LONG}
    conv = {"read": c["read"], "kept": c["kept"], "dropped": drops,
            "balanced": c["read"] == c["kept"] + sum(drops.values())}
    pieces = {"written": c["pieces_written"], "conversations_split": c["split_conversations"],
              PAIR_TOO_LONG: c[PAIR_TOO_LONG]}
    return {"conversations": conv, "pieces": pieces}
