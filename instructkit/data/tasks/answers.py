"""How a task's answers are extracted from a completion and compared with the gold answer.

A task declares its scoring (``answer: {extract: number, compare: numeric}`` in its YAML; the built-in
loaders declare theirs), as lm-eval's per-task filters and nanochat's per-task ``evaluate`` do, instead
of one normalisation applied to every target. Both sides go through the same extractor (a clean gold
answer extracts to itself), then the comparator returns a score in [0, 1].

Extractors (:data:`EXTRACTORS`) first cut the *final-answer span*: the text after the last ``####``,
``So the answer is`` or ``The answer is`` up to the end of that sentence (a period followed by a
space or the end; a decimal point is not an end), else the whole completion. Then:

* ``number``: the last number in the span (sign, decimal point, ``1,000`` thousands separators and
  ``$`` accepted), written canonically (``-1234.5``); falls back to the whole text when the span has none;
* ``letter``: an option letter, anchored: ``(B)``, ``B)``, ``B.``/``B:`` or a bare ``B`` standing
  alone (at the start of the span or after "answer is"); a word that merely starts with B gives nothing;
* ``choice``: the choice the span equals (normalised) or starts with, else the one named last, else "" (unparsed);
* ``regex``: the first match of the declared ``pattern`` (group 1 if it has groups);
* ``first_line``: the first non-empty line of the span;
* ``full``: the whole completion, stripped (summaries and other long answers, with f1 / rouge_l);
* ``math``: the answer HF's ``math-verify`` finds (``\\boxed{}``, LaTeX, "final answer is", else the
  rightmost number *or expression*: a dangling ``9 * 6`` counts as 54), ``number`` where it finds nothing
  or is not installed (``math_answers.py``).

Comparators (:data:`COMPARATORS`): ``numeric`` (as numbers, relative tolerance 1e-9), ``exact``
(stripped strings), ``normalized_text`` (SQuAD normalisation that keeps signs and decimal points of
numbers and never lets a target normalise to nothing), ``f1`` (token F1), ``rouge_l``, ``math``
(math-verify's symbolic equality, ``\\frac{3}{4}`` == ``0.75``; ``numeric`` where it cannot judge).

The task's declaration is what runs: ``number``/``numeric`` never call math-verify (a task that must not
pay for an unevaluated expression, e.g. an RL reward on arithmetic, declares them); GSM8K and other
math tasks declare ``math``/``math`` (docs/eval.md, docs/rl.md).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

from instructkit.data.tasks.rouge import rouge_l

_END = r"(?=\.(?:\s|$)|\n|$)"  # end of the answer sentence; "3.5" is not an end
_SPAN = [re.compile(r"####\s*([^\n]*)"),
         re.compile(r"[Ss]o the (?:final )?answer is[:\s]*(.*?)" + _END),
         re.compile(r"[Tt]he (?:final )?answer is[:\s]*(.*?)" + _END)]
NUMBER = re.compile(r"(?<![\w.])[-\u2212]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])")
_LETTER = re.compile(r"^\(([A-Z])\)|^([A-Z])\)|^([A-Z])[.:](?:\s|$)|^([A-Z])$")


def answer_span(text: str) -> str:
    """The final-answer span of a completion (see module docstring)."""
    text = str(text)
    for pat in _SPAN:
        ms = pat.findall(text)
        if ms:
            return ms[-1].strip()
    return text.strip()


def parse_number(s: str) -> Decimal | None:
    """``"$1,234.50"`` -> Decimal('1234.50'); ``"-5"`` -> -5; None when ``s`` is not one number."""
    s = str(s).strip().replace("\u2212", "-").replace("$", "").replace(" ", "").rstrip(".")
    if not re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", s):
        return None
    try:
        return Decimal(s.replace(",", ""))
    except InvalidOperation:
        return None


def canonical_number(d: Decimal) -> str:
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "") else s


def extract_number(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    for src in (answer_span(text), str(text)):
        nums = NUMBER.findall(src)
        if nums:
            d = parse_number(nums[-1])
            if d is not None:
                return canonical_number(d)
    return ""


def extract_letter(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    span = answer_span(text)
    m = _LETTER.match(span)
    if m:
        return next(g for g in m.groups() if g)
    # "... answer is (B)" inside a longer span, or the last parenthesised option "(B)"
    found = re.findall(r"\(([A-Z])\)", span)
    return found[-1] if found else ""


def extract_choice(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    span = answer_span(text)
    norm = normalize(span)
    for c in sorted(choices or (), key=lambda c: -len(normalize(c))):  # "not sure" before "not"
        nc = normalize(c)
        if nc and (norm == nc or norm.startswith(nc + " ")):
            return str(c).strip()
    hits = [(m.start(), len(nc), str(c).strip()) for c in choices or () if (nc := normalize(c))  # flexible-extract:
            for m in re.finditer(rf"(?<!\w){re.escape(nc)}(?!\w)", normalize(str(text)))]  # the choice named last
    return max(hits)[2] if hits else ("" if choices else first_line(span))  # "": unparsed, counted by the runner


def extract_regex(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    if not pattern:
        raise ValueError("extract: regex needs a pattern")
    m = re.search(pattern, str(text))
    if not m:
        return ""
    return (m.group(1) if m.re.groups else m.group(0)).strip()


def first_line(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    for line in answer_span(text).split("\n"):
        if line.strip():
            return line.strip()
    return ""


def full_text(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    return str(text).strip()


def extract_math(text: str, choices: Sequence[str] | None = None, pattern: str | None = None) -> str:
    from instructkit.data.tasks import math_answers
    found = math_answers.extract(text)
    return found if found is not None else extract_number(text)


EXTRACTORS: dict[str, Callable[..., str]] = {
    "number": extract_number, "letter": extract_letter, "choice": extract_choice, "regex": extract_regex,
    "first_line": first_line, "full": full_text, "math": extract_math,
}


# -- comparison ------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """SQuAD normalisation (lower case, no punctuation, no articles, squeezed spaces) that keeps numbers:
    a decimal point or thousands comma between digits and a minus sign before a digit survive."""
    t = str(text).lower().replace("\u2212", "-")
    out = []
    for i, ch in enumerate(t):
        if ch in _PUNCT:
            prev, nxt = t[i - 1] if i else "", t[i + 1] if i + 1 < len(t) else ""
            keep = (ch in ".," and prev.isdigit() and nxt.isdigit()) or (ch == "-" and nxt.isdigit() and not prev.isalnum())
            if not keep:
                continue
        out.append(ch)
    return " ".join(_ARTICLES.sub(" ", "".join(out)).split())


def _targets(target: str | Sequence[str]) -> list[str]:
    return [target] if isinstance(target, str) else [str(t) for t in target]


def compare_numeric(pred: str, target: str | Sequence[str]) -> float:
    p = parse_number(pred)
    if p is None:
        return 0.0
    for t in _targets(target):
        g = parse_number(t)
        if g is not None and abs(p - g) <= Decimal("1e-9") * max(Decimal(1), abs(g)):
            return 1.0
    return 0.0


def compare_exact(pred: str, target: str | Sequence[str]) -> float:
    return float(any(str(pred).strip() == t.strip() for t in _targets(target)))


def compare_normalized(pred: str, target: str | Sequence[str]) -> float:
    for t in _targets(target):
        p, g = parse_number(pred), parse_number(t)
        if p is not None and g is not None:  # numbers compare as numbers, never as digit strings
            if p == g:
                return 1.0
            continue
        nt = normalize(t)
        if nt:
            if normalize(pred) == nt:
                return 1.0
        # a target that normalises to nothing ("(A)", "The") compares on its squeezed lower-cased text
        elif " ".join(str(pred).lower().split()) == " ".join(t.lower().split()) and t.strip():
            return 1.0
    return 0.0


def compare_f1(pred: str, target: str | Sequence[str]) -> float:
    from collections import Counter
    best = 0.0
    p = normalize(pred).split()
    for t in _targets(target):
        g = normalize(t).split()
        if not p or not g:  # as SQuAD: both empty = 1; a target normalised to nothing compares as written
            best = max(best, float(" ".join(str(pred).lower().split()) == " ".join(t.lower().split())))
            continue
        common = sum((Counter(p) & Counter(g)).values())
        if common:
            prec, rec = common / len(p), common / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def compare_rouge_l(pred: str, target: str | Sequence[str]) -> float:
    return rouge_l(pred, target)


def compare_math(pred: str, target: str | Sequence[str]) -> float:
    from instructkit.data.tasks import math_answers
    judged = math_answers.equal(pred, _targets(target))
    return judged if judged is not None else compare_numeric(pred, target)


COMPARATORS: dict[str, Callable[[str, str | Sequence[str]], float]] = {
    "numeric": compare_numeric, "exact": compare_exact, "normalized_text": compare_normalized,
    "f1": compare_f1, "rouge_l": compare_rouge_l, "math": compare_math,
}
#: the metric name a comparator's score is reported under
METRIC_OF = {"numeric": "exact_match", "exact": "exact_match", "normalized_text": "exact_match", "f1": "f1",
             "rouge_l": "rouge_l", "math": "exact_match"}
#: the default comparison for a task's legacy ``metric:`` key
COMPARE_OF_METRIC = {"exact_match": "normalized_text", "accuracy": "normalized_text", "f1": "f1",
                     "rouge_l": "rouge_l"}


@dataclass(frozen=True)
class AnswerSpec:
    """How a task's generated answers are scored (its YAML ``answer:`` mapping)."""

    extract: str = "first_line"
    compare: str = "normalized_text"
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.extract not in EXTRACTORS:
            raise ValueError(f"extract {self.extract!r} is not one of {', '.join(EXTRACTORS)}")
        if self.compare not in COMPARATORS:
            raise ValueError(f"compare {self.compare!r} is not one of {', '.join(COMPARATORS)}")
        if self.extract == "regex":
            if not self.pattern:
                raise ValueError("extract: regex needs pattern: '<regular expression>'")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern is not a valid regular expression ({e})") from None

    @property
    def metric(self) -> str:
        return METRIC_OF[self.compare]

    def extract_text(self, text: str, choices: Sequence[str] | None = None) -> str:
        return EXTRACTORS[self.extract](text, choices, self.pattern)

    def gold(self, target: str | Sequence[str], choices: Sequence[str] | None = None) -> list[str]:
        """Gold answers after extraction (a target the extractor finds nothing in stays as written)."""
        return [self.extract_text(t, choices) or t.strip() for t in _targets(target)]

    def score(self, answer: str, target: str | Sequence[str], choices: Sequence[str] | None = None) -> float:
        """``answer`` is already extracted (majority voting works on extracted answers)."""
        if not str(answer).strip():
            return 0.0
        return COMPARATORS[self.compare](answer, self.gold(target, choices))

    def to_dict(self) -> dict:
        out = {"extract": self.extract, "compare": self.compare, **({"pattern": self.pattern} if self.pattern else {})}
        if "math" in (self.extract, self.compare):  # which scorer ran: results from machines with and without
            from instructkit.data.tasks import math_answers  # math-verify are not silently compared
            out["verifier"] = math_answers.verifier() or "instructkit"
        return out


ANSWER_KEYS = {"extract", "compare", "pattern"}


def parse_answer(d: object, metric: str = "exact_match") -> AnswerSpec:
    """An :class:`AnswerSpec` from a YAML mapping (ValueError naming the bad key on bad input)."""
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ValueError("must be a mapping {extract: ..., compare: ...}")
    unknown = set(d) - ANSWER_KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(ANSWER_KEYS))})")
    compare = str(d.get("compare", COMPARE_OF_METRIC.get(metric, "normalized_text")))
    extract = str(d.get("extract", DEFAULT_EXTRACT.get(compare, "first_line")))
    return AnswerSpec(extract=extract, compare=compare, pattern=d.get("pattern"))


#: the extraction used when a task declares only ``compare``
DEFAULT_EXTRACT = {"numeric": "number", "math": "math", "f1": "full", "rouge_l": "full"}
