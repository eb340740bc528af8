"""Incremental detokenization with stop strings: text as it is generated, never re-decoded from the start.

:class:`Detokenizer` decodes only a short window per step (the last released tokens as context plus the
new ones), the way TGI and vLLM do: ``decode(ids[prefix:])`` minus ``decode(ids[prefix:read])`` is the
text the new tokens add. The context token matters for tokenizers whose decoder strips a word's leading
space at the start of a decode (SentencePiece's ``▁``). Text ending in U+FFFD (a character whose bytes are
split across byte-level tokens) is held back until the character is complete, so no stream chunk carries a
broken character.

:class:`StopChecker` adds stop strings: a tail that could still grow into a stop string is held back, so a
stop string never reaches a client, not even split across chunks. The final text is by construction the
concatenation of every piece released (``text``), so a streamed reply equals the non-streamed one.
"""

from __future__ import annotations

from typing import Any, Sequence


class Detokenizer:
    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        self.prefix = 0   # first token of the decode window (context for the new tokens)
        self.read = 0     # tokens already turned into released text
        self._prefix_text = ""

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def step(self, ids: Sequence[int], final: bool = False) -> str:
        """The text ``ids[read:]`` adds; ``final``: release it even if it ends inside a character."""
        if len(ids) <= self.read:
            return ""
        new_text = self._decode(ids[self.prefix:])
        if len(new_text) <= len(self._prefix_text) or (new_text.endswith("\ufffd") and not final):
            return ""
        delta = new_text[len(self._prefix_text):]
        self.prefix, self.read = self.read, len(ids)
        self._prefix_text = self._decode(ids[self.prefix:self.read])
        return delta


class StopChecker:
    """``feed(ids) -> (new stable text, stopped)``; ``finish(ids) -> the rest``; ``text``: all released."""

    def __init__(self, tokenizer: Any, stop: Sequence[str]):
        self.detok = Detokenizer(tokenizer)
        self.stop = [s for s in stop if s]
        self.pieces: list[str] = []
        self.held = ""        # decoded but not released: it may be the start of a stop string
        self.stopped = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def _release(self, s: str) -> str:
        if s:
            self.pieces.append(s)
        return s

    def _cut(self, pending: str) -> int:
        # a stop string can only start inside ``pending``: any earlier start would have been held back
        return min((k for k in (pending.find(s) for s in self.stop) if k != -1), default=-1)

    def feed(self, ids: Sequence[int]) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        pending = self.held + self.detok.step(ids)
        cut = self._cut(pending)
        if cut != -1:
            self.held, self.stopped = "", True
            return self._release(pending[:cut]), True
        h = self._hold(pending)
        self.held = pending[len(pending) - h:] if h else ""
        return self._release(pending[: len(pending) - h]), False

    def finish(self, ids: Sequence[int]) -> str:
        """Release everything still held (generation ended for another reason than a stop string)."""
        if self.stopped:
            return ""
        pending = self.held + self.detok.step(ids, final=True)
        self.held, self.stopped = "", True
        cut = self._cut(pending)
        return self._release(pending if cut == -1 else pending[:cut])

    def _hold(self, text: str) -> int:
        """Length of the longest tail of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:k]):
                    best = k
                    break
        return best
