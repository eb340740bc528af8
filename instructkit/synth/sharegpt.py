"""ShareGPT cleaning, Vicuna/FastChat practice, with every drop counted by reason.

1. read a JSON list even when truncated (incremental decoding keeps every complete record), or JSONL;
2. HTML -> markdown with ``markdownify`` where a message holds HTML;
3. roles normalised; a leading assistant turn and a trailing unanswered user turn are trimmed (counted);
   empty messages, unknown roles and non-alternating conversations are dropped;
4. optional language filter (``langdetect``, seeded so it is deterministic);
5. exact duplicates, then near duplicates (MinHash LSH over word 5-shingles, ``datasketch``);
6. conversations longer than ``max_tokens`` are split at turn boundaries, measured in the real tokens
   of the training chat template (FastChat estimates +6 per message and can emit empty pieces); each
   piece keeps the system prompt; a single turn pair that alone exceeds the limit is dropped (counted).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

from instructkit.errors import DataError
from instructkit.synth.report import RunReport

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant",
         "bing": "assistant", "assistant": "assistant", "system": "system"}
_HTML = re.compile(r"<(div|p|pre|code|span|br|ol|ul|li|table|h[1-6]|a|b|strong|em|i)\b[^>]*>", re.I)


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


def normalise(rec: Any, rep: RunReport) -> dict[str, Any] | None:
    """Validated ``{id, system, messages}`` or None (the reason counted)."""
    turns = rec.get("conversations") if isinstance(rec, dict) else None
    if not isinstance(turns, list):
        return rep.drop("broken_record", str(rec)[:120])
    cid = str(rec.get("id", ""))
    system, msgs = rec.get("system") if isinstance(rec.get("system"), str) else None, []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("value"), str) or t.get("from") not in ROLES:
            return rep.drop("broken_or_unknown_role", cid)
        role, val = ROLES[t["from"]], t["value"]
        if _HTML.search(val):
            from markdownify import markdownify
            val = markdownify(val, heading_style="ATX")
            rep.counts["html_converted_messages"] += 1
        val = val.strip()
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
    return {"id": cid, "system": system, "messages": msgs}


def count_template_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the rendered chat (render to text, then encode: ``apply_chat_template(tokenize=True)``
    returns a BatchEncoding in transformers 5, whose ``len`` is its number of keys)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


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
        for _ in range(len(pairs) - sum(len(p) for p in pieces)):  # a pair alone over the limit
            rep.drop("turn_pair_longer_than_max_tokens", conv["id"])
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


def clean(cfg: Any, tokenizer: Any, progress: bool = True) -> tuple[list[dict], RunReport]:
    from datasketch import MinHash, MinHashLSH
    from tqdm.auto import tqdm

    rep = RunReport("clean-sharegpt", cfg.model_dump())
    read: dict[str, int] = {}
    convs = []
    for n, rec in enumerate(iter_records(cfg.input, read)):
        if cfg.limit and n >= cfg.limit:
            break
        rep.counts["read"] += 1
        c = normalise(rec, rep)
        if c is not None:
            convs.append(c)
    rep.counts.update(read)
    if cfg.languages:
        from langdetect import DetectorFactory, LangDetectException, detect
        DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes the filter deterministic
        keep = []
        for c in tqdm(convs, desc="language", disable=not progress, leave=False):
            sample = " ".join(m["content"] for m in c["messages"][:2])[:1000]
            try:
                lang = detect(sample)
            except LangDetectException:
                lang = "unknown"
            if lang in cfg.languages:
                keep.append(c)
            else:
                rep.drop(f"language:{lang}", sample[:100])
        convs = keep
    seen, lsh, unique = set(), MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm), []
    for i, c in enumerate(tqdm(convs, desc="dedup", disable=not progress, leave=False)):
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
    splitter, out = Splitter(tokenizer, cfg.max_tokens), []
    for c in tqdm(unique, desc="split", disable=not progress, leave=False):
        out.extend(splitter.split(c, rep))
    items = []
    for c in out:
        msgs = ([{"role": "system", "content": c["system"]}] if c["system"] else []) + c["messages"]
        items.append({"id": c["id"], "messages": msgs, "provenance": {"method": "clean-sharegpt", "source": str(cfg.input)}})
        rep.keep(c["messages"][0]["content"][:120])
    return items, rep
