"""Parsing teacher lists and the self-instruct filters; every failure and every drop has a named reason.

Teachers (especially small ones) write numbered lists loosely: ``3. Instruction:``, ``**3. Instruction:**``,
``Task 3:``, ``3)``, markdown bold, missing ``###`` separators, an unfinished last item. The parsers
accept those variants and return a reason for what they cannot read, so the report can count it.
"""

from __future__ import annotations

import re
import string
from typing import Any

from instructkit.synth.rouge import RougeLFilter

_LABEL = r"[*_\s]*{name}[*_\s]*:[*_\s]*"
# A label starts a line ("4. Input:", "**4. Input:**", "Input:") or, when numbered, may follow text on the same
# line or a "###" ("... Paris. 5. Instruction: ..."), as Alpaca's re.split(r"{idx}\.\s+(Instruction|Input|Output):")
# accepts. An unnumbered "input:"/"output:" in mid-line prose is not a label.
_AT_LINE = r"^[#*\s]*"
_MID_NUM = r"(?<=[\s#])\**\d+\s*[.)]\s*"
_ITEM = re.compile(rf"(?im)(?:{_AT_LINE}\d+\s*[.)]?\s*|{_MID_NUM})" + _LABEL.format(name="(?:instructions?|task)"))
_INPUT = re.compile(rf"(?im)(?:{_AT_LINE}(?:\d+\s*[.)]?\s*)?|{_MID_NUM})" + _LABEL.format(name="input"))
_OUTPUT = re.compile(rf"(?im)(?:{_AT_LINE}(?:\d+\s*[.)]?\s*)?|{_MID_NUM})" + _LABEL.format(name="output"))
_NOINPUT = re.compile(r"^\s*(<\s*no\s*input\s*>|no input\.?|none\.?|n/?a\.?|-)\s*$", re.I)
_TASK_LINE = re.compile(r"(?im)^[#*\s]*(?:task\s*)?(\d+)\s*[.):]\s*(?:task\s*\d*\s*:)?\s*(.+)$")


def _clean(s: str) -> str:
    s = re.sub(r"\n?\s*#{3,}\s*$", "", s.strip())  # the '###' separator before the next item
    return s.strip().strip("*").strip()


def parse_alpaca_list(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """Items ``{instruction, input, output}`` from an Alpaca-style numbered list, and failure reasons."""
    starts = list(_ITEM.finditer(text))
    if not starts:
        return [], ["no_numbered_items"]
    items, fails = [], []
    for k, m in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        block = text[m.end(): end]
        om = _OUTPUT.search(block)
        if om is None:
            fails.append("no_output_field" if k + 1 < len(starts) else "truncated_last_item")
            continue
        im = _INPUT.search(block[: om.start()])
        instruction = _clean(block[: im.start()] if im else block[: om.start()])
        inp = _clean(block[im.end(): om.start()]) if im else ""
        out = _clean(block[om.end():])
        if _NOINPUT.match(inp):
            inp = ""
        if not instruction:
            fails.append("empty_instruction")
        elif not out:
            fails.append("empty_output")
        else:
            items.append({"instruction": instruction, "input": inp, "output": out})
    return items, fails


def parse_task_list(text: str) -> tuple[list[str], list[str]]:
    """Instructions from a paper-style ``Task 9: ...`` / ``9. ...`` list (one per line)."""
    found = [_clean(m.group(2)) for m in _TASK_LINE.finditer(text)]
    if not found:
        line = text.strip().splitlines()[0].strip() if text.strip() else ""
        return ([_clean(line)], []) if line else ([], ["empty_response"])
    return [f for f in found if f], (["empty_instruction"] * sum(1 for f in found if not f))


_NEEDS_INPUT = re.compile(r"\b(the following|given|below|this (text|sentence|paragraph|passage|list|code|email|article)"
                          r"|these (sentences|words|numbers|items))\b", re.I)


class InstructionFilter:
    """The self-instruct/Alpaca filters in order; ``check`` returns None (keep) or the drop reason."""

    def __init__(self, *, min_words: int = 4, max_words: int = 150, blacklist: list[str] | None = None,
                 rouge_threshold: float = 0.7, contamination_index: set[int] | None = None):
        self.min_words, self.max_words = min_words, max_words
        self.blacklist = [w.lower() for w in (blacklist or [])]
        self._black = [re.compile(r"\b" + re.escape(w) + r"\b", re.I) for w in self.blacklist]
        self.rouge = RougeLFilter(rouge_threshold)
        self.contamination = contamination_index or set()
        self.seen: set[str] = set()
        self.last_similar: str | None = None

    def add_existing(self, instruction: str, inp: str = "") -> None:
        """Seed the pool (seed tasks count for novelty, as in Alpaca)."""
        self.rouge.add(instruction)
        self.seen.add(_norm(instruction, inp))

    def check(self, instruction: str, inp: str = "", output: str = "") -> str | None:
        words = instruction.split()
        if len(words) < self.min_words:
            return "too_short"
        if len(words) > self.max_words:
            return "too_long"
        if any(p.search(instruction) for p in self._black):
            return "blacklist"
        if instruction[0] in string.punctuation:
            return "starts_with_punctuation"
        if not instruction[0].isascii():
            return "starts_non_ascii"
        if not inp.strip() and _NEEDS_INPUT.search(instruction):
            return "missing_input"
        if _norm(instruction, inp) in self.seen:
            return "exact_duplicate"
        d = self.rouge.check(instruction)
        if not d.keep:
            self.last_similar = self.rouge.texts[d.most_similar]
            return "rouge_l_similar"
        if self.contamination:
            from instructkit.data.tasks.contamination import ngrams
            if ngrams("\n".join([instruction, inp, output])) & self.contamination:
                return "contaminated_13gram"
        return None

    def accept(self, instruction: str, inp: str = "") -> None:
        self.rouge.add(instruction)
        self.seen.add(_norm(instruction, inp))


def _norm(instruction: str, inp: str) -> str:
    return " ".join((instruction + " || " + inp).lower().split())


def contamination_index(refs: list[str]) -> set[int]:
    """13-gram index of eval sets (JSONL files or task ids), via the task system's contamination module."""
    from instructkit.data.tasks.contamination import eval_texts, ngrams

    idx: set[int] = set()
    for ref in refs:
        for t in eval_texts(ref):
            idx |= ngrams(t)
    return idx


def words(x: Any) -> int:
    return len(str(x).split())


# -- instances (self-instruct prepare_for_finetuning.py, plus degenerate-output checks) -------------------
_REPEAT_UNIT = re.compile(r"(.{2,40}?)(?:\s*\1){7,}", re.S)  # one unit 8+ times in a row: "la la la ..."


def is_repetitive(text: str, n: int = 3, min_words: int = 24, max_dup_share: float = 0.5) -> bool:
    """A repetition loop: a short unit repeated 8+ times in a row, or (from 24 words on) more than half of
    the word trigrams are repeats of earlier ones (a small teacher that loops until max_new_tokens)."""
    if any(any(ch.isalpha() for ch in m.group(1)) for m in _REPEAT_UNIT.finditer(text)):  # not "000000"
        return True
    w = text.lower().split()
    if len(w) < min_words:
        return False
    grams = [tuple(w[i: i + n]) for i in range(len(w) - n + 1)]
    return 1 - len(set(grams)) / len(grams) > max_dup_share


def instance_problem(inp: str, out: str) -> str | None:
    """Why an (input, output) instance is unusable, or None. The paper drops input == output, an empty
    output and a field ending with ':' (an unfinished generation); we also drop fields with no letter or
    digit (``input: "["``) and repetition loops."""
    if not out.strip():
        return "instance_empty_output"
    if inp.strip() == out.strip():
        return "instance_input_equals_output"
    if inp.strip().endswith(":") or out.strip().endswith(":"):
        return "instance_unfinished_colon"
    if (inp.strip() and not any(ch.isalnum() for ch in inp)) or not any(ch.isalnum() for ch in out):
        return "instance_degenerate_no_text"
    if is_repetitive(inp) or is_repetitive(out):
        return "instance_repetitive"
    return None
